import Logging
import Metrics
import SpindleKernel
import SpindleTasklets

/// Options of a `DistributedRunner`.
public struct RunnerConfiguration: Sendable {
    /// A shard that has not finished a phase this long after the phase began fails the tick,
    /// named in the error. Real: the runner stops waiting and reports; the shard's late result
    /// is discarded.
    public var phaseTimeout: Duration = .seconds(30)
    /// Whether nodes referenced by cross-shard edges are resolved into ghost caches.
    public var ghostResolution: Bool = true
    /// Ghost nodes each shard's cache holds (least recently used evicted first).
    public var ghostCacheCapacity: Int = 1024
    /// Lanes of the tasklet pool that run in-process shards' phases (at most one per shard is
    /// used). Shards are work items: 8 shards on 2 lanes run 4 after another on each lane.
    public var parallelism: Int = Tasklet.defaultLanes
    /// The tasklet pool whose lanes run in-process shards (and whose runner thread runs the
    /// tick loop). Its launches queue: a runner holds the pool for the length of a `run(_:)`
    /// (between checkpoints) and while a phase that timed out is still running — give a
    /// runner whose shards may hang a pool of its own.
    public var pool: TaskletPool = .shared
    /// How keys are placed on shards; nil: the coordinator's placement. A runner given a
    /// placement sets it on its coordinator (build colony shards with the same one).
    public var placement: PlacementStrategy? = nil
    /// What a failed tick rolls back to.
    public var rollback: Rollback = .tickStart
    /// Checkpoint automatically every this many ticks (into `checkpointDirectory`); the first
    /// checkpoint is taken before the runner's first tick. nil: only `checkpoint(to:)`.
    public var checkpointEvery: Int? = nil
    /// Where automatic checkpoints go.
    public var checkpointDirectory: String? = nil
    /// What to do when a remote shard is lost.
    public var recovery: RecoveryPolicy = .fail
    /// Starts a new shard server for a lost remote shard (`RecoveryPolicy.respawn`): returns
    /// the new server's `RemoteShard` once it said hello (e.g. spawn `spindle-shard` and wait
    /// with `ShardServerListener.waitForShard(_:timeout:)`).
    public var launcher: ShardLauncher? = nil
    /// The longest a launcher may take to bring a shard back.
    public var respawnTimeout: Duration = .seconds(60)
    /// The longest any call to a remote shard may take (digest, snapshot, restore, rollback).
    public var remoteCallTimeout: Duration = .seconds(30)
    /// The collectives shards may contribute to (`Collective`), by name.
    public var collectives: [AnyCollective] = []
    public var logger = Logger(label: "spindle.runner")
    /// Where the `spindle_runner_*` metrics go (nil: the global `MetricsSystem`).
    public var metricsFactory: (any MetricsFactory)? = nil

    public init(phaseTimeout: Duration = .seconds(30), ghostResolution: Bool = true,
                ghostCacheCapacity: Int = 1024, parallelism: Int = Tasklet.defaultLanes,
                placement: PlacementStrategy? = nil) {
        self.phaseTimeout = phaseTimeout
        self.ghostResolution = ghostResolution
        self.ghostCacheCapacity = ghostCacheCapacity
        self.parallelism = parallelism
        self.placement = placement
    }

    /// The number of online processors (the tasklet pool's default lane count).
    public static var defaultParallelism: Int { Tasklet.defaultLanes }

    func validate() throws(RunnerError) {
        guard phaseTimeout > .zero else { throw .invalidConfiguration("phaseTimeout must be positive, got \(phaseTimeout)") }
        guard parallelism >= 1 else { throw .invalidConfiguration("parallelism must be at least 1, got \(parallelism)") }
        guard parallelism <= pool.configuration.maxLanes else {
            throw .invalidConfiguration("parallelism \(parallelism) exceeds the pool's maxLanes \(pool.configuration.maxLanes)")
        }
        guard ghostCacheCapacity >= 1 else {
            throw .invalidConfiguration("ghostCacheCapacity must be at least 1, got \(ghostCacheCapacity)")
        }
        if let every = checkpointEvery {
            guard every >= 1 else { throw .invalidConfiguration("checkpointEvery must be at least 1, got \(every)") }
            guard checkpointDirectory != nil else {
                throw .invalidConfiguration("checkpointEvery needs a checkpointDirectory")
            }
        }
        if case .respawn(let attempts) = recovery {
            guard attempts >= 1 else { throw .invalidConfiguration("respawn needs maxAttempts ≥ 1, got \(attempts)") }
            guard launcher != nil else {
                throw .invalidConfiguration("RecoveryPolicy.respawn needs a launcher (RunnerConfiguration.launcher)")
            }
        }
        guard remoteCallTimeout > .zero, respawnTimeout > .zero else {
            throw .invalidConfiguration("remoteCallTimeout and respawnTimeout must be positive")
        }
        var names = Set<String>()
        for c in collectives where !names.insert(c.name).inserted {
            throw .invalidConfiguration("two collectives are named \"\(c.name)\"")
        }
    }
}

/// What a failed tick rolls back to.
public enum Rollback: Sendable, Hashable, CustomStringConvertible {
    /// Every shard goes back to its state at the failed tick's start: the runner keeps each
    /// shard's snapshot from right before the tick's Sense (in memory; a shard server keeps its
    /// own). Costs a snapshot per shard per tick. Shards that do not implement `snapshot()`
    /// turn rollback off for the runner.
    case tickStart
    /// Every shard goes back to the last checkpoint (no per-tick cost; the ticks since it are
    /// lost and run again). Without a checkpoint yet, nothing is rolled back.
    case lastCheckpoint
    /// Nothing is rolled back: writes a shard made in the failed tick stay.
    case disabled

    public var description: String {
        switch self {
        case .tickStart: return "tick start"
        case .lastCheckpoint: return "last checkpoint"
        case .disabled: return "disabled"
        }
    }
}

/// What the runner does when a remote shard is lost (its process died, its host went away,
/// its connection broke, it stopped answering).
public enum RecoveryPolicy: Sendable, Hashable, CustomStringConvertible {
    /// The tick fails naming the shard and the tick.
    case fail
    /// Start a new shard server through `RunnerConfiguration.launcher` (up to `maxAttempts`
    /// launches per lost shard, and at most `maxAttempts` recoveries of one shard per `run`),
    /// restore it from the last checkpoint, roll every other shard back to the same tick, and
    /// continue. Needs a checkpoint (`checkpointEvery`, or an explicit `checkpoint(to:)`).
    case respawn(maxAttempts: Int)

    public var description: String {
        switch self {
        case .fail: return "fail"
        case .respawn(let n): return "respawn (up to \(n) attempts)"
        }
    }
}

/// Starts a new shard server for `shard` and returns its remote handle once it said hello.
/// The second argument is the attempt (1-based).
public typealias ShardLauncher = @Sendable (_ shard: ShardID, _ attempt: Int) async throws -> RemoteShard
