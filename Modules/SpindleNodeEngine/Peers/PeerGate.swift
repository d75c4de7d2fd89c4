import SpindleKernel

/// Limits how many requests may be in flight to each peer at once.
public struct PeerGate: Sendable {
    /// Maximum in-flight requests per peer.
    public var limit: Int
    private var inFlight: [NodeID: Int] = [:]
    /// How many acquisitions were refused because a peer was at its limit.
    public private(set) var refusals: UInt64 = 0

    public init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Takes a slot for `peer`; false (and counted) when the peer is at its limit.
    public mutating func tryAcquire(_ peer: NodeID) -> Bool {
        let n = inFlight[peer, default: 0]
        guard n < limit else {
            refusals &+= 1
            return false
        }
        inFlight[peer] = n + 1
        return true
    }

    /// Returns a slot taken with `tryAcquire`. Releasing more than was acquired does nothing.
    public mutating func release(_ peer: NodeID) {
        guard let n = inFlight[peer] else { return }
        if n <= 1 { inFlight[peer] = nil } else { inFlight[peer] = n - 1 }
    }

    /// Requests currently in flight to `peer`.
    public func inFlight(to peer: NodeID) -> Int { inFlight[peer, default: 0] }

    /// Forgets `peer` (an idle peer's entry; nothing is in flight to it).
    public mutating func forget(_ peer: NodeID) {
        inFlight[peer] = nil
    }

    /// Peers with requests in flight.
    public var peerCount: Int { inFlight.count }
}
