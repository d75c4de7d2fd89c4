import SpindleKernel

/// Peer policy and health: allow and block lists, and up/down detection from consecutive
/// failures or suspicion. Each change of a peer's status is reported once.
struct PeerGovernor: Sendable {
    enum Status: String, Sendable, Equatable {
        case up, down
    }

    /// When non-empty, only these peers are allowed.
    var allowList: Set<NodeID> = []
    /// Peers that are never allowed (takes precedence over the allow list).
    var blockList: Set<NodeID> = []
    /// Consecutive failures after which a peer is considered down.
    var failuresUntilDown: Int

    private var status: [NodeID: Status] = [:]
    private var failures: [NodeID: Int] = [:]

    init(failuresUntilDown: Int = 3) {
        self.failuresUntilDown = max(1, failuresUntilDown)
    }

    /// Whether traffic with `peer` is allowed by policy.
    func isAllowed(_ peer: NodeID) -> Bool {
        if blockList.contains(peer) { return false }
        return allowList.isEmpty || allowList.contains(peer)
    }

    /// The peer's status (peers never heard of are `nil`).
    func status(of peer: NodeID) -> Status? { status[peer] }

    /// A message or reply arrived from `peer`: returns `.up` when this changes its status.
    mutating func observeAlive(_ peer: NodeID) -> Status? {
        failures[peer] = nil
        return transition(peer, to: .up)
    }

    /// A request to `peer` failed: returns `.down` when this changes its status.
    mutating func observeFailure(_ peer: NodeID) -> Status? {
        let n = failures[peer, default: 0] + 1
        failures[peer] = n
        return n >= failuresUntilDown ? transition(peer, to: .down) : nil
    }

    /// The failure detector suspects `peer` (or stopped suspecting it).
    mutating func observeSuspicion(_ peer: NodeID, suspected: Bool) -> Status? {
        transition(peer, to: suspected ? .down : .up)
    }

    private mutating func transition(_ peer: NodeID, to new: Status) -> Status? {
        guard status[peer] != new else { return nil }
        status[peer] = new
        return new
    }

    /// Forgets `peer`'s status and failures (an idle peer's state). Policy lists stay.
    mutating func forget(_ peer: NodeID) {
        status[peer] = nil
        failures[peer] = nil
    }

    /// Peers with a status or failures recorded.
    var peerCount: Int { Set(status.keys).union(failures.keys).count }
}
