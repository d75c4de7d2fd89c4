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
        /// How keys are placed on the registered shards (a runner's configuration may choose
        /// another: `RunnerConfiguration.placement`).
        public var placement: PlacementStrategy = .consistentHashing
        /// A barrier round also fails when no shard has arrived for this long; nil (the
        /// default): only the runner's phase timeout applies, so a phase that takes every
        /// shard long is never cut short before it.
        public var barrierIdleTimeout: Duration? = nil
        public var logger = Logger(label: "spindle.runner.coordinator")

        /// Virtual nodes per shard when the placement is consistent hashing (0 for ranges).
        public var virtualNodes: Int {
            get { if case .hashed(let v) = placement { return v } else { return 0 } }
            set { placement = .hashed(virtualNodes: newValue) }
        }

        public init(placement: PlacementStrategy = .consistentHashing, barrierIdleTimeout: Duration? = nil) {
            self.placement = placement
            self.barrierIdleTimeout = barrierIdleTimeout
        }

        public init(virtualNodes: Int, barrierIdleTimeout: Duration? = nil) {
            self.init(placement: .hashed(virtualNodes: virtualNodes), barrierIdleTimeout: barrierIdleTimeout)
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
    /// `membership.epoch`, readable without taking the lock (runners check it every tick).
    private let epochValue = Atomic<UInt64>(0)

    public init(configuration: Configuration = Configuration(), clock: any SpindleClock = SystemClock()) {
        self.configuration = configuration
        self.clock = clock
        self.hlc = HybridLogicalClock(clock: clock)
        let empty = ShardPlacement(shards: [], strategy: configuration.placement)
        state = Mutex(State(membership: Membership(epoch: 0, shards: [], placement: empty)))
    }

    /// The last completed tick (0 before the first).
    public var currentTick: UInt64 { state.withLock { $0.tick } }

    /// The registered shards and their placement.
    public var membership: Membership { state.withLock { $0.membership } }

    /// The membership's epoch: it changes on every register, deregister and placement change.
    public var membershipEpoch: UInt64 { epochValue.load(ordering: .acquiring) }

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
            epochValue.store(s.membership.epoch, ordering: .releasing)
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
            epochValue.store(s.membership.epoch, ordering: .releasing)
        }
        configuration.logger.debug("deregistered shard", metadata: ["shard": "\(shard)"])
    }

    /// Places keys by `strategy` from now on (the registered shards stay). A runner notices the
    /// change at its next tick; models partitioned by the old placement (colony shards) must be
    /// rebuilt.
    public func usePlacement(_ strategy: PlacementStrategy) {
        let changed: Bool = state.withLock { s in
            let p = s.membership.placement.with(strategy: strategy)
            guard p != s.membership.placement else { return false }
            s.membership.placement = p
            s.membership.epoch += 1
            epochValue.store(s.membership.epoch, ordering: .releasing)
            return true
        }
        if changed { configuration.logger.debug("placement changed", metadata: ["placement": "\(strategy)"]) }
    }

    /// Sets the global tick (a runner rolling back to a checkpoint, or restored from one).
    func rewind(to tick: UInt64) {
        state.withLock { $0.tick = tick }
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
