import Logging
import SpindleKernel
import Synchronization

/// The runner's coordinator: the global tick, the shard registry, the placement ring and the
/// hybrid logical clock that stamps every barrier message.
///
/// One coordinator serves one runner. Registering or deregistering a shard rebuilds the
/// placement; a runner notices the change at the start of its next tick (a deregistered shard
/// stops taking part and ghost copies of its nodes are dropped).
public final class Coordinator: Sendable {
    /// Coordinator options.
    public struct Configuration: Sendable {
        /// Virtual nodes per shard on the placement ring.
        public var virtualNodes: Int = 256
        /// A barrier round fails when no shard has arrived for this long.
        public var barrierIdleTimeout: Duration = .seconds(10)
        public var logger = Logger(label: "spindle.runner.coordinator")

        public init(virtualNodes: Int = 256, barrierIdleTimeout: Duration = .seconds(10)) {
            self.virtualNodes = virtualNodes
            self.barrierIdleTimeout = barrierIdleTimeout
        }
    }

    /// A snapshot of the registry.
    public struct Membership: Sendable, Equatable {
        /// Increases on every register and deregister.
        public var epoch: UInt64
        public var shards: [ShardID]
        public var placement: ShardPlacement
    }

    public let configuration: Configuration
    public let clock: any SpindleClock
    /// Stamps barrier messages so traces across processes order causally.
    public let hlc: HybridLogicalClock

    private struct State {
        var tick: UInt64 = 0
        var membership: Membership
    }
    private let state: Mutex<State>

    public init(configuration: Configuration = Configuration(), clock: any SpindleClock = SystemClock()) {
        self.configuration = configuration
        self.clock = clock
        self.hlc = HybridLogicalClock(clock: clock)
        let empty = ShardPlacement(shards: [], virtualNodes: configuration.virtualNodes)
        state = Mutex(State(membership: Membership(epoch: 0, shards: [], placement: empty)))
    }

    /// The last completed tick (0 before the first).
    public var currentTick: UInt64 { state.withLock { $0.tick } }

    /// The registered shards and their placement.
    public var membership: Membership { state.withLock { $0.membership } }

    /// The placement of keys on the registered shards.
    public var placement: ShardPlacement { membership.placement }

    /// Adds a shard to the registry and the placement.
    /// - Throws: `RunnerError.alreadyRegistered` when it is registered.
    public func register(_ shard: ShardID) throws(RunnerError) {
        try state.withLock { (s: inout State) throws(RunnerError) in
            guard !s.membership.shards.contains(shard) else { throw .alreadyRegistered(shard) }
            s.membership.shards.append(shard)
            s.membership.shards.sort()
            s.membership.placement = s.membership.placement.adding(shard)
            s.membership.epoch += 1
        }
        configuration.logger.debug("registered shard", metadata: ["shard": "\(shard)"])
    }

    /// Removes a shard from the registry and the placement.
    /// - Throws: `RunnerError.notRegistered` when it is not registered (deregistering twice).
    public func deregister(_ shard: ShardID) throws(RunnerError) {
        try state.withLock { (s: inout State) throws(RunnerError) in
            guard let i = s.membership.shards.firstIndex(of: shard) else { throw .notRegistered(shard) }
            s.membership.shards.remove(at: i)
            s.membership.placement = s.membership.placement.removing(shard)
            s.membership.epoch += 1
        }
        configuration.logger.debug("deregistered shard", metadata: ["shard": "\(shard)"])
    }

    /// Advance: moves the global tick forward by one and returns the new tick.
    @discardableResult
    public func advance() -> UInt64 {
        state.withLock { s in
            s.tick += 1
            return s.tick
        }
    }

    /// A barrier configured with this coordinator's idle timeout and the given phase timeout.
    public func makeBarrier(phaseTimeout: Duration) -> PhaseBarrier {
        PhaseBarrier(phaseTimeout: phaseTimeout, idleTimeout: configuration.barrierIdleTimeout)
    }
}
