import SpindleKernel

/// Limits how many requests may be in flight to each peer at once.
struct PeerGate: Sendable {
    /// Maximum in-flight requests per peer.
    var limit: Int
    private var inFlight: [NodeID: Int] = [:]
    /// How many acquisitions were refused because a peer was at its limit.
    private(set) var refusals: UInt64 = 0

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Takes a slot for `peer`; false (and counted) when the peer is at its limit.
    mutating func tryAcquire(_ peer: NodeID) -> Bool {
        let n = inFlight[peer, default: 0]
        guard n < limit else {
            refusals &+= 1
            return false
        }
        inFlight[peer] = n + 1
        return true
    }

    /// Returns a slot taken with `tryAcquire`. Releasing more than was acquired does nothing.
    mutating func release(_ peer: NodeID) {
        guard let n = inFlight[peer] else { return }
        if n <= 1 { inFlight[peer] = nil } else { inFlight[peer] = n - 1 }
    }

    /// Requests currently in flight to `peer`.
    func inFlight(to peer: NodeID) -> Int { inFlight[peer, default: 0] }

    /// Forgets `peer` (an idle peer's entry; nothing is in flight to it).
    mutating func forget(_ peer: NodeID) {
        inFlight[peer] = nil
    }

    /// Peers with requests in flight.
    var peerCount: Int { inFlight.count }
}
