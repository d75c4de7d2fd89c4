import SpindleKernel
import Synchronization

/// What one shard's Act emitted, routed per target shard: edge batches, messages, ghost misses.
/// Built by whoever ran the Act (a lane for an in-process shard, the coordinator for a remote
/// one); read by the targets' Decay.
struct ActRouting {
    /// Edge batch per target slot position (shared with deliveries and the tick's result).
    var edgesTo: [[CrossShardEdge]] = []
    /// Messages per target slot position.
    var messagesTo: [[ShardMessage]] = []
    /// Ghost requests per owner slot position (distinct keys).
    var missesFor: [[NodeKey]] = []
    /// Distinct missed keys to install after the tick, in miss order: at most the cache's
    /// capacity (the last ones: installing more would only evict them again).
    var installOrder: [NodeKey] = []
    var edgeCount = 0
    var messageCount = 0
    var ghostHits = 0
    var ghostMisses = 0
    /// An edge or message for a shard the runner does not run.
    var failure: RunnerError?
    /// Whether any batch, message or request was filled since the last reset.
    var isEmpty = true

    mutating func reset(targets n: Int) {
        if edgesTo.count != n {
            edgesTo = Array(repeating: [], count: n)
            messagesTo = Array(repeating: [], count: n)
            missesFor = Array(repeating: [], count: n)
        } else if !isEmpty {
            for i in 0..<n {
                if !edgesTo[i].isEmpty { edgesTo[i] = [] }
                if !messagesTo[i].isEmpty { messagesTo[i] = [] }
                if !missesFor[i].isEmpty { missesFor[i] = [] }
            }
        }
        if !installOrder.isEmpty { installOrder = [] }
        edgeCount = 0
        messageCount = 0
        ghostHits = 0
        ghostMisses = 0
        failure = nil
        isEmpty = true
    }
}

/// Whether a shard can be snapshotted (learned at the first try).
enum SnapshotSupport: Sendable {
    case unknown, supported, unsupported
}

/// The runner's per-shard bookkeeping.
///
/// `@unchecked Sendable` and `@exclusivity(unchecked)`: the phase fields (`result`, `durations`, `routing`, `exports`,
/// the rollback point, `sink`) are written only by the one thread running this shard's phase
/// (a pool lane, or the coordinator lane for a remote shard) between a phase's fork and its
/// join, and read by the coordinator lane after the join; the tasklet pool's fork and join
/// order those accesses. `member`, `position` and `pendingInstalls` change only on the
/// coordinator lane or in the runner's shell, never while a phase runs. `running` and
/// `doneRound` are atomics the watchdog reads at any time.
final class ShardSlot: @unchecked Sendable {
    let id: ShardID
    @exclusivity(unchecked) var member: ShardMember
    /// This slot's index in the runner's slots (and in every barrier round's shard list).
    @exclusivity(unchecked) var position: Int
    let ghosts: SharedGhostCache
    let sink = ContributionSink()
    /// The context this shard's phases get (in-process shards): built when the placement
    /// changes, with storage of its own; tick, phase and collectives are set in place.
    @exclusivity(unchecked) var context: ShardContext
    /// The engine's `collectivesEpoch` that `context` carries.
    @exclusivity(unchecked) var contextCollectivesEpoch: UInt64 = 0

    // Phase outcome (lane-owned during the phase).
    @exclusivity(unchecked) var result: Result<Int, PhaseFailure> = .success(0)
    @exclusivity(unchecked) var lost = false
    @exclusivity(unchecked) var durations: (Duration, Duration, Duration) = (.zero, .zero, .zero)
    @exclusivity(unchecked) var processed: (Int, Int, Int) = (0, 0, 0)
    @exclusivity(unchecked) var stamps: (HLCTimestamp, HLCTimestamp, HLCTimestamp) = (.zero, .zero, .zero)
    @exclusivity(unchecked) var routing = ActRouting()
    /// Ghosts exported in the last Decay, by key.
    @exclusivity(unchecked) var exports: [NodeKey: GhostNode] = [:]
    /// A remote shard's Decay contributions (encoded), by name.
    @exclusivity(unchecked) var remoteContributions: [(name: String, value: [UInt8])] = []

    /// Keys missed in the last completed tick, to install before the next Sense.
    @exclusivity(unchecked) var pendingInstalls: [NodeKey] = []

    // The rollback point: the shard's state and ghost cache at the start of the running tick.
    @exclusivity(unchecked) var snapshots = SnapshotSupport.unknown
    @exclusivity(unchecked) var savedSnapshot: [UInt8]? = nil
    @exclusivity(unchecked) var savedGhosts: GhostCache? = nil
    /// The cache's mutation count when `savedGhosts` was taken.
    @exclusivity(unchecked) var savedGhostsVersion: UInt64 = .max
    /// Whether the shard's server kept a rollback point in this tick's Sense (remote shards).
    @exclusivity(unchecked) var remoteRollbackPoint = false
    /// A snapshot being written to or read from a checkpoint, and the digest taken with it.
    @exclusivity(unchecked) var transfer: [UInt8] = []
    @exclusivity(unchecked) var snapshotDigest: UInt64 = 0
    /// Why the last snapshot or restore on a lane failed.
    @exclusivity(unchecked) var transferError: RunnerError?

    /// Whether a lane is running this shard's phase code now (for the watchdog).
    let running = Atomic<Bool>(false)
    /// The last barrier round this shard finished (in-process shards).
    let doneRound = Atomic<UInt64>(0)

    /// Whether the shard reads ghosts (else none are fetched for it).
    let readsGhosts: Bool
    /// The in-process shard, without reference counting: `member` holds it strongly for the
    /// slot's whole life (an in-process member is never replaced). Unused for remote shards.
    unowned(unsafe) let shard: any Shard

    init(member: ShardMember, position: Int, ghostCapacity: Int) {
        self.member = member
        self.id = member.id
        switch member {
        case .local(let s):
            readsGhosts = s.readsGhosts
            shard = s
        case .remote(let r):
            readsGhosts = r.readsGhosts
            shard = IdleShard.placeholder
        }
        self.position = position
        self.ghosts = SharedGhostCache(capacity: ghostCapacity)
        self.context = ShardContext(tick: 0, phase: .sense, shard: member.id,
                                    placement: ShardPlacement(shards: [member.id]))
    }

    var local: (any Shard)? {
        if case .local(let s) = member { return s }
        return nil
    }

    var remote: RemoteShard? {
        if case .remote(let r) = member { return r }
        return nil
    }

    func setDuration(_ d: Duration, processed n: Int, for phase: Phase) {
        switch phase {
        case .sense: durations.0 = d; processed.0 = n
        case .act: durations.1 = d; processed.1 = n
        case .decay: durations.2 = d; processed.2 = n
        }
    }

    func setStamp(_ s: HLCTimestamp, for phase: Phase) {
        switch phase {
        case .sense: stamps.0 = s
        case .act: stamps.1 = s
        case .decay: stamps.2 = s
        }
    }
}
