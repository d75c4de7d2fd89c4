import SpindleKernel

/// Everything that can fail in the distributed runner; each case names the shard, phase and
/// tick concerned.
public indirect enum RunnerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Which limit a barrier round hit.
    public enum TimeoutLimit: Sendable, Equatable, CustomStringConvertible {
        /// The round ran longer than the runner's phase timeout.
        case phase(Duration)
        /// No shard arrived for the coordinator's barrier idle timeout.
        case idle(Duration)

        public var description: String {
            switch self {
            case .phase(let d): return "phase timeout \(d)"
            case .idle(let d): return "barrier idle timeout \(d)"
            }
        }
    }

    /// Shards did not finish `phase` of `tick` in time.
    case phaseTimedOut(phase: Phase, tick: UInt64, missing: [ShardID], waited: Duration, limit: TimeoutLimit)
    /// A shard threw (or reported an error) in a phase.
    case shardFailed(shard: ShardID, phase: Phase, tick: UInt64, reason: String)
    /// A remote shard was lost during `tick` (its process died, its connection closed or broke
    /// the protocol, or it did not answer a call in time).
    case shardLost(shard: ShardID, tick: UInt64, reason: String)
    /// `cause` failed a tick, and every shard was rolled back to its state after tick `to`
    /// (the next tick runs `to + 1`): at the failed tick's start, or at the last checkpoint.
    case rolledBack(to: UInt64, cause: RunnerError)
    /// Shards are still running a phase of an earlier tick that timed out; the tick could not start.
    case shardsBusy(shards: [ShardID], tick: UInt64)
    /// A shard emitted an edge or message whose target is not a registered shard (or an edge
    /// whose target node has no owner because no shard is registered).
    case unknownTarget(target: String, emittedBy: ShardID, tick: UInt64)
    /// `register` of a shard that is registered.
    case alreadyRegistered(ShardID)
    /// `deregister` (or use) of a shard that is not registered — e.g. deregistering twice.
    case notRegistered(ShardID)
    /// Two shards given to one runner share an id.
    case duplicateShard(ShardID)
    /// The runner has no shards to run.
    case noShards
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// A remote shard's connection failed or sent something that is not the runner protocol.
    case remoteFailure(shard: ShardID?, reason: String)
    /// A remote shard did not answer `operation` within `limit`.
    case remoteTimedOut(shard: ShardID, operation: String, limit: Duration)
    /// The shard does not implement `snapshot()`/`restore(_:)`: it cannot be checkpointed or
    /// rolled back.
    case snapshotUnsupported(shard: ShardID)
    /// A shard's `snapshot()` or `restore(_:)` threw.
    case snapshotFailed(shard: ShardID, operation: String, reason: String)
    /// Writing or reading a checkpoint failed at `path` (the reason includes the system's error).
    case checkpointFailed(path: String, reason: String)
    /// A checkpoint file is damaged or not a checkpoint: names the file and what is wrong.
    case checkpointCorrupt(file: String, reason: String)
    /// A checkpoint does not fit the runner it is restored into (other shards, another placement).
    case checkpointMismatch(String)
    /// A lost shard could not be brought back; `cause` is the failure that lost it.
    case recoveryFailed(shard: ShardID, tick: UInt64, reason: String, cause: RunnerError)
    /// A shard contributed to a collective that cannot take the value (unregistered name,
    /// another value type, a value that does not encode).
    case collectiveFailed(collective: String, shard: ShardID, tick: UInt64, reason: String)
    /// The runner or coordinator was shut down.
    case shutDown

    /// The failure behind rollback and recovery wrappers.
    public var rootCause: RunnerError {
        switch self {
        case .rolledBack(_, let cause): return cause.rootCause
        case .recoveryFailed(_, _, _, let cause): return cause.rootCause
        default: return self
        }
    }

    /// The tick every shard was rolled back to, if the failure was rolled back.
    public var rolledBackTo: UInt64? {
        if case .rolledBack(let t, _) = self { return t }
        return nil
    }

    public var description: String {
        switch self {
        case let .phaseTimedOut(phase, tick, missing, waited, limit):
            let names = missing.map(\.description).joined(separator: ", ")
            return "\(phase) phase of tick \(tick) timed out after \(waited) (\(limit)); "
                + "shards that did not arrive: \(names)"
        case let .shardFailed(shard, phase, tick, reason):
            return "\(shard) failed in the \(phase) phase of tick \(tick): \(reason)"
        case let .shardLost(shard, tick, reason):
            return "\(shard) was lost in tick \(tick): \(reason)"
        case let .rolledBack(to, cause):
            return "\(cause); every shard was rolled back to tick \(to) (the next tick is \(to + 1))"
        case let .shardsBusy(shards, tick):
            return "tick \(tick) cannot start: \(shards.map(\.description).joined(separator: ", ")) "
                + "still running a phase that timed out"
        case let .unknownTarget(target, shard, tick):
            return "\(shard) emitted for \(target) in tick \(tick), which is not a registered shard"
        case .alreadyRegistered(let s): return "\(s) is already registered"
        case .notRegistered(let s): return "\(s) is not registered"
        case .duplicateShard(let s): return "two shards share the id \(s)"
        case .noShards: return "the runner has no shards"
        case .invalidConfiguration(let what): return "invalid runner configuration: \(what)"
        case let .remoteFailure(shard, reason):
            return "remote \(shard.map(\.description) ?? "shard"): \(reason)"
        case let .remoteTimedOut(shard, operation, limit):
            return "remote \(shard) did not answer \(operation) within \(limit)"
        case .snapshotUnsupported(let s):
            return "\(s) does not implement snapshot() and restore(_:): it cannot be checkpointed or rolled back"
        case let .snapshotFailed(shard, operation, reason):
            return "\(shard): \(operation) failed: \(reason)"
        case let .checkpointFailed(path, reason):
            return "checkpoint \(path): \(reason)"
        case let .checkpointCorrupt(file, reason):
            return "checkpoint file \(file) is corrupt: \(reason)"
        case .checkpointMismatch(let what):
            return "the checkpoint does not fit this runner: \(what)"
        case let .recoveryFailed(shard, tick, reason, cause):
            return "\(shard) could not be recovered in tick \(tick): \(reason) (after: \(cause))"
        case let .collectiveFailed(collective, shard, tick, reason):
            return "\(shard) contributed to collective \"\(collective)\" in tick \(tick): \(reason)"
        case .shutDown: return "the runner is shut down"
        }
    }
}

/// `run(_:)` stopped at a failing tick: the ticks completed before it, and its error.
public struct RunFailure: Error, Sendable, CustomStringConvertible {
    /// The results of the ticks that completed (and stay done), in tick order.
    public var completed: [TickResult]
    /// Why the run stopped.
    public var error: RunnerError

    public init(completed: [TickResult], error: RunnerError) {
        self.completed = completed
        self.error = error
    }

    public var description: String {
        let done = completed.isEmpty ? "no tick completed"
            : "ticks \(completed.first!.tick)…\(completed.last!.tick) completed"
        return "\(done); then: \(error)"
    }
}
