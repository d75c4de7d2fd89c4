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
    /// Envelopes refused as malformed or out of place (logged sparsely).
    let refusals = Atomic<Int>(0)

    /// Counts a refused envelope; true when this one should be logged (the 1st, 10th,
    /// 100th…), so a hostile peer cannot flood the log.
    func countRefusal() -> Bool {
        var n = refusals.add(1, ordering: .relaxed).newValue
        while n % 10 == 0 { n /= 10 }
        return n == 1
    }

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
