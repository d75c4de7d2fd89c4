import SpindleKernel

/// Everything that can fail in the distributed runner; each case names the shard, phase and
/// tick concerned.
public enum RunnerError: Error, Sendable, Equatable, CustomStringConvertible {
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
    /// The runner or coordinator was shut down.
    case shutDown

    public var description: String {
        switch self {
        case let .phaseTimedOut(phase, tick, missing, waited, limit):
            let names = missing.map(\.description).joined(separator: ", ")
            return "\(phase) phase of tick \(tick) timed out after \(waited) (\(limit)); "
                + "shards that did not arrive: \(names)"
        case let .shardFailed(shard, phase, tick, reason):
            return "\(shard) failed in the \(phase) phase of tick \(tick): \(reason)"
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
        case .shutDown: return "the runner is shut down"
        }
    }
}
