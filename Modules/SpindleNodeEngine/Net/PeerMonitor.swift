import SpindleKernel

/// The peers this node watches: those it calls. For each it keeps when the peer was last
/// used and last heard from, and one check per heartbeat interval in a heap, so a poll
/// touches only the peers whose check is due.
///
/// ```
///  call to P ──▶ watch(P) ─┐                 ┌─▶ idle too long: evict P's state
///  anything from P ──▶ heard(P)   heap of checks ─┼─▶ liveness bound / φ: P down, its calls fail
///                          └──── every interval ─┴─▶ nothing heard for an interval: heartbeat
/// ```
/// Peers that only call this node are never watched: a client that goes quiet is not down.
struct PeerMonitor: Sendable {
    struct Watched: Sendable, Equatable {
        /// When the peer was last heard from (any envelope, heartbeat answers included).
        var lastHeard: MonotonicInstant
        /// When a call last went to the peer.
        var lastUsed: MonotonicInstant
        /// When the last heartbeat was sent to it.
        var lastHeartbeat: MonotonicInstant?
        /// Whether the failure detector got a sample since the last check.
        var sampledSinceCheck = false
        /// Tells this watch's heap entries from those of an earlier, forgotten one.
        var generation: UInt64 = 0
    }

    struct Check: Sendable {
        var peer: NodeID
        var generation: UInt64
    }

    private(set) var peers: [NodeID: Watched] = [:]
    private var checks = TimerHeap<Check>(capacity: .max)
    private var generation: UInt64 = 0
    /// Heartbeats sent over the node's life.
    private(set) var heartbeatsSent: UInt64 = 0

    init() {}

    /// The watched peers.
    var watched: [NodeID: Watched] { peers }

    func isWatched(_ peer: NodeID) -> Bool { peers[peer] != nil }

    /// A call goes to `peer`: watch it (the first time: as if just heard from, with a check
    /// one `interval` from now). Returns true when the peer is newly watched.
    @discardableResult
    mutating func use(_ peer: NodeID, now: MonotonicInstant, interval: Duration) -> Bool {
        if peers[peer] != nil {
            peers[peer]!.lastUsed = now
            return false
        }
        generation &+= 1
        peers[peer] = Watched(lastHeard: now, lastUsed: now, generation: generation)
        _ = checks.schedule(at: now + interval, Check(peer: peer, generation: generation))
        return true
    }

    /// Something arrived from `peer`. Returns true when the failure detector should take a
    /// sample now (the first arrival since the last check), false otherwise or when the peer
    /// is not watched.
    mutating func heard(_ peer: NodeID, now: MonotonicInstant) -> Bool {
        guard var w = peers[peer] else { return false }
        w.lastHeard = now
        let sample = !w.sampledSinceCheck
        w.sampledSinceCheck = true
        peers[peer] = w
        return sample
    }

    /// The next watched peer whose check is due at `now`, with its state; the caller decides
    /// and then calls `rearm` or `forget`.
    mutating func nextDue(now: MonotonicInstant) -> (NodeID, Watched)? {
        while let (_, check) = checks.popDue(now: now) {
            if let w = peers[check.peer], w.generation == check.generation { return (check.peer, w) }
        }
        return nil
    }

    /// Schedules `peer`'s next check and resets its per-check sample flag.
    mutating func rearm(_ peer: NodeID, at next: MonotonicInstant, heartbeatSent: MonotonicInstant?) {
        guard var w = peers[peer] else { return }
        w.sampledSinceCheck = false
        if let heartbeatSent {
            w.lastHeartbeat = heartbeatSent
            heartbeatsSent &+= 1
        }
        peers[peer] = w
        _ = checks.schedule(at: next, Check(peer: peer, generation: w.generation))
    }

    /// Stops watching `peer` (its heap entry is skipped when it comes due).
    mutating func forget(_ peer: NodeID) {
        peers[peer] = nil
    }

    /// When the next check is due.
    var nextDeadline: MonotonicInstant? { peers.isEmpty ? nil : checks.nextDeadline }
}
