import SpindleKernel
import Synchronization

/// One reliable link of a system: one it opened to a peer's address, or one a peer opened
/// to it; with the peer node once known (from a `hello`, a `welcome` or any envelope's
/// source).
final class PeerLink: Sendable {
    enum Direction: Sendable, Equatable {
        case outbound(Address)
        case inbound
    }

    let id: UInt64
    let direction: Direction
    let link: ReliableLink
    private let peerNode = Mutex<NodeID?>(nil)
    /// Connect attempts that failed in a row (outbound links).
    let connectFailures = Atomic<Int>(0)

    init(id: UInt64, direction: Direction, link: ReliableLink) {
        self.id = id
        self.direction = direction
        self.link = link
    }

    var node: NodeID? { peerNode.withLock { $0 } }

    /// Records the peer's node; false when the link is already bound to another one.
    func learn(_ node: NodeID) -> Bool {
        peerNode.withLock { n in
            if let known = n { return known == node }
            n = node
            return true
        }
    }

    var description: String {
        switch direction {
        case .outbound(let a): return "link \(id) to \(a)"
        case .inbound: return "link \(id) from \(node.map { "\($0)" } ?? "an unknown node")"
        }
    }
}
