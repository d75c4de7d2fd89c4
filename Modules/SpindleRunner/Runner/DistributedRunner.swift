import Logging
import SpindleKernel
import Synchronization

/// Advances sharded state in ticks of three barrier-separated phases across in-process and
/// remote shards.
///
/// Each tick runs Sense on every shard, then Act, then delivers the cross-shard edges and
/// messages Act emitted and runs Decay, then the coordinator advances the global tick. No shard
/// starts a phase before every shard finished the previous one. In-process shards run in
/// parallel on the runner's threads (`RunnerConfiguration.parallelism`); remote shards run in
/// shard servers (`ShardHost`) and are reached through `RemoteShard`.
///
/// ```swift
/// let coordinator = Coordinator()
/// let runner = try DistributedRunner(coordinator: coordinator, shards: shards)
/// let first = try await runner.tick()       // first.tick == 1
/// let next = try await runner.run(10)       // ticks 2…11
/// await runner.shutdown()
/// ```
///
/// A failed tick (a phase timed out, a shard threw) does not advance the tick: the next
/// `tick()` runs the same tick number again. Writes that shards already made in the failed
/// tick stay (the runner cannot undo a shard's writes); what Act emitted is discarded.
public final class DistributedRunner: Sendable {
    public let coordinator: Coordinator
    public let configuration: RunnerConfiguration
    private let core: RunnerCore
    private let driver: ThreadPool
    private let workers: ThreadPool?
    private let isShutDown = Atomic<Bool>(false)

    /// A runner over in-process shards.
    /// - Throws: `RunnerError.noShards`, `.duplicateShard`, `.invalidConfiguration`.
    public convenience init(coordinator: Coordinator, shards: [any Shard],
                            configuration: RunnerConfiguration = RunnerConfiguration()) throws(RunnerError) {
        try self.init(coordinator: coordinator, members: shards.map { .local($0) }, configuration: configuration)
    }

    /// A runner over in-process and remote shards. Shards not yet registered with the
    /// coordinator are registered.
    /// - Throws: `RunnerError.noShards`, `.duplicateShard`, `.invalidConfiguration`.
    public init(coordinator: Coordinator, members: [ShardMember],
                configuration: RunnerConfiguration = RunnerConfiguration()) throws(RunnerError) {
        try configuration.validate()
        guard !members.isEmpty else { throw .noShards }
        var seen = Set<ShardID>()
        for m in members where !seen.insert(m.id).inserted { throw .duplicateShard(m.id) }
        let registered = Set(coordinator.membership.shards)
        for m in members where !registered.contains(m.id) { try coordinator.register(m.id) }

        self.coordinator = coordinator
        self.configuration = configuration
        let localCount = members.filter { if case .local = $0 { return true } else { return false } }.count
        workers = localCount == 0 ? nil
            : ThreadPool(threads: min(configuration.parallelism, localCount), name: "spindle-shard",
                         spinIterations: configuration.spinIterations)
        driver = ThreadPool(threads: 1, name: "spindle-coord", spinIterations: configuration.spinIterations)
        let slots = members.map { ShardSlot(member: $0, ghostCapacity: configuration.ghostCacheCapacity) }
        core = RunnerCore(coordinator: coordinator, slots: slots, configuration: configuration, workers: workers)
        for slot in slots {
            guard let remote = slot.remote else { continue }
            let gate = core.gate
            let hlc = coordinator.hlc
            remote.attach(
                onReply: { reply, stamp in
                    let arrival = hlc.receive(stamp)
                    gate.arrive(PhaseOutcome(shard: reply.shard, result: reply.result,
                                             duration: reply.duration, stamp: arrival),
                                round: reply.round, fromLocalThread: false)
                },
                onClose: { reason in gate.fail(remote.id, reason: "connection lost: \(reason)") })
        }
    }

    /// The shards taking part (a shard deregistered from the coordinator leaves at the next tick).
    public var shardIDs: [ShardID] {
        get async { (try? await onDriver { .success(self.core.slots.map(\.id)) }) ?? [] }
    }

    /// Runs one tick: Sense, Act, delivery, Decay, Advance.
    /// - Returns: the tick's result; its `tick` is the coordinator's new tick.
    /// - Throws: `RunnerError.phaseTimedOut` naming the phase, tick and missing shards,
    ///   `.shardFailed` naming the shard that threw, `.shardsBusy`, `.unknownTarget`, `.shutDown`.
    public func tick() async throws(RunnerError) -> TickResult {
        try await onDriver { self.core.runTick() }
    }

    /// Runs `count` ticks back to back on the coordinator thread.
    /// - Returns: one result per tick, in order.
    /// - Throws: the first tick's error; the ticks before it stay done.
    public func run(_ count: Int) async throws(RunnerError) -> [TickResult] {
        try await onDriver {
            var results: [TickResult] = []
            results.reserveCapacity(max(0, count))
            for _ in 0..<max(0, count) {
                switch self.core.runTick() {
                case .success(let r): results.append(r)
                case .failure(let e): return .failure(e)
                }
            }
            return .success(results)
        }
    }

    /// The combined digest of every shard's state (`StateDigest.combine`), remote shards included.
    public func stateDigest() async throws(RunnerError) -> UInt64 {
        let (local, remotes): ([ShardID: UInt64], [RemoteShard]) = try await onDriver {
            self.core.localDigests().map { ($0, self.core.slots.compactMap(\.remote)) }
        }
        var digests = Array(local.values)
        for r in remotes { digests.append(try await r.stateDigest(stamp: coordinator.hlc.tick())) }
        return StateDigest.combine(digests)
    }

    /// A copy of one shard's ghost cache (nil for a shard the runner does not run).
    public func ghostCache(of shard: ShardID) async -> GhostCache? {
        try? await onDriver {
            .success(self.core.slots.first { $0.id == shard }?.ghosts.cache.withLock { $0 })
        }
    }

    /// Deregisters `shard` from the coordinator; it leaves now, and every ghost copy of its nodes
    /// is dropped.
    /// - Throws: `RunnerError.notRegistered` when it is not registered (e.g. removed twice).
    public func removeShard(_ shard: ShardID) async throws(RunnerError) {
        try coordinator.deregister(shard)
        _ = try await onDriver {
            self.core.reconcileMembership()
            return .success(())
        }
    }

    /// A runner dropped without `shutdown()` still lets its threads end (without waiting).
    deinit {
        if !isShutDown.load(ordering: .acquiring) {
            driver.requestStop()
            workers?.requestStop()
        }
    }

    /// Stops the runner's threads, after phases still running return. Idempotent.
    public func shutdown() async {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        driver.shutdown()
        workers?.shutdown()
    }

    private func onDriver<T: Sendable>(_ body: @escaping @Sendable () -> Result<T, RunnerError>) async throws(RunnerError) -> T {
        guard !isShutDown.load(ordering: .acquiring) else { throw .shutDown }
        let result: Result<T, RunnerError> = await withCheckedContinuation { c in
            if !driver.submit({ c.resume(returning: body()) }) {
                c.resume(returning: .failure(.shutDown))
            }
        }
        return try result.get()
    }
}
