import Logging
import SpindleKernel
import SpindleTasklets
import Synchronization

/// Advances sharded state in ticks of three barrier-separated phases across in-process and
/// remote shards.
///
/// Each tick runs Sense on every shard, then Act, then delivers the cross-shard edges and
/// messages Act emitted and runs Decay, then combines the tick's collectives and the
/// coordinator advances the global tick. No shard starts a phase before every shard finished
/// the previous one. In-process shards are work items on the tasklet pool
/// (`RunnerConfiguration.pool`, `parallelism` lanes); remote shards run in shard servers
/// (`ShardHost`) and are reached through `RemoteShard`.
///
/// ```swift
/// let coordinator = Coordinator()
/// let runner = try DistributedRunner(coordinator: coordinator, shards: shards)
/// let first = try await runner.tick()       // first.tick == 1
/// let next = try await runner.run(10)       // ticks 2…11
/// try await runner.checkpoint(to: "/var/lib/colony/checkpoints")
/// await runner.shutdown()
/// ```
///
/// A failed tick (a phase timed out, a shard threw, a collective could not combine) does not
/// advance the tick, and every shard is rolled back to the tick's start (`Rollback`), so
/// running it again applies no phase twice. A lost remote shard is respawned from the last
/// checkpoint under `RecoveryPolicy.respawn`.
public final class DistributedRunner: Sendable {
    public let coordinator: Coordinator
    public let configuration: RunnerConfiguration
    let engine: TickEngine
    /// Public operations take turns.
    private let operations = AsyncLock()
    /// A launch still running after its answer went out (timed-out stragglers).
    let inFlight = InFlight()
    private let isShutDown = Atomic<Bool>(false)
    /// Where and at which tick the last checkpoint was written or read.
    private let lastCheckpoint = Mutex<(directory: String, tick: UInt64)?>(nil)
    /// Test hook: failures injected into checkpoint writing.
    let checkpointFaults = CheckpointFaults()

    /// A runner over in-process shards.
    /// - Throws: `RunnerError.noShards`, `.duplicateShard`, `.invalidConfiguration`.
    public convenience init(coordinator: Coordinator, shards: [any Shard],
                            configuration: RunnerConfiguration = RunnerConfiguration()) throws(RunnerError) {
        try self.init(coordinator: coordinator, members: shards.map { .local($0) }, configuration: configuration)
    }

    /// A runner over in-process and remote shards. Shards not yet registered with the
    /// coordinator are registered; a configured placement is set on the coordinator.
    /// - Throws: `RunnerError.noShards`, `.duplicateShard`, `.invalidConfiguration`.
    public init(coordinator: Coordinator, members: [ShardMember],
                configuration: RunnerConfiguration = RunnerConfiguration()) throws(RunnerError) {
        try configuration.validate()
        guard !members.isEmpty else { throw .noShards }
        var seen = Set<ShardID>()
        for m in members where !seen.insert(m.id).inserted { throw .duplicateShard(m.id) }
        if let p = configuration.placement { coordinator.usePlacement(p) }
        let registered = Set(coordinator.membership.shards)
        for m in members where !registered.contains(m.id) { try coordinator.register(m.id) }
        self.coordinator = coordinator
        self.configuration = configuration
        engine = TickEngine(coordinator: coordinator, members: members, configuration: configuration)
    }

    /// The shards taking part (a shard deregistered from the coordinator leaves at the next tick).
    public var shardIDs: [ShardID] {
        get async { (try? await exclusive { () throws(RunnerError) in self.engine.ids }) ?? [] }
    }

    /// Where and at which tick the last checkpoint was written (or restored from).
    public var lastCheckpointLocation: (directory: String, tick: UInt64)? { lastCheckpoint.withLock { $0 } }

    /// Runs one tick: Sense, Act, delivery, Decay, collectives, Advance.
    /// - Returns: the tick's result; its `tick` is the coordinator's new tick.
    /// - Throws: `RunnerError.rolledBack(to:cause:)` around the failure when every shard went
    ///   back to the tick's start (or the last checkpoint); `.phaseTimedOut` naming the phase,
    ///   tick and missing shards (rolled back once the stragglers return); `.shardFailed`,
    ///   `.shardLost`, `.shardsBusy`, `.unknownTarget`, `.shutDown`.
    public func tick() async throws(RunnerError) -> TickResult {
        let results: [TickResult]
        do throws(RunFailure) {
            results = try await run(1)
        } catch {
            throw error.error
        }
        guard let r = results.last else { throw .noShards }
        return r
    }

    /// Runs `count` ticks, in as few pool launches as checkpoints allow.
    /// - Returns: one result per tick, in order.
    /// - Throws: `RunFailure`: the ticks that completed (and stay done) and the failing tick's
    ///   error. A lost remote shard is recovered first when the policy allows (the ticks since
    ///   the checkpoint run again; the results hold each tick once).
    public func run(_ count: Int) async throws(RunFailure) -> [TickResult] {
        guard count > 0 else { return [] }
        guard !isShutDown.load(ordering: .acquiring) else { throw RunFailure(completed: [], error: .shutDown) }
        await operations.lock()
        defer { operations.unlock() }
        let start = coordinator.currentTick
        var results: [TickResult] = []
        results.reserveCapacity(count)
        var planner = RunPlanner(target: start + UInt64(count), checkpointEvery: configuration.checkpointEvery,
                                 lastCheckpoint: lastCheckpointLocation?.tick, recovery: configuration.recovery,
                                 rollback: configuration.rollback)
        while true {
            guard !isShutDown.load(ordering: .acquiring) else { throw RunFailure(completed: results, error: .shutDown) }
            if let busy = await inFlight.waitUntilIdle(limit: configuration.phaseTimeout) {
                throw RunFailure(completed: results, error: .shardsBusy(shards: busy, tick: coordinator.currentTick + 1))
            }
            switch planner.next(currentTick: coordinator.currentTick) {
            case .done:
                return results
            case .checkpoint(let tick):
                guard let directory = configuration.checkpointDirectory else { return results }
                do { _ = try await writeCheckpoint(to: directory) } catch {
                    throw RunFailure(completed: results, error: error)
                }
                planner.checkpointed(at: tick)
            case .runTicks(let n):
                let outcome = await runSegment(n)
                if let first = outcome.results.first { results.removeAll { $0.tick >= first.tick } }
                // Ticks are in order: only a segment that re-ran ticks before `start` needs
                // filtering. Otherwise the segment's array is taken as it is (no copy of each
                // result) when it is the first.
                let startsAfter = outcome.results.first.map { $0.tick > start } ?? true
                let kept = startsAfter ? outcome.results : outcome.results.filter { $0.tick > start }
                if results.isEmpty { results = kept } else { results.append(contentsOf: kept) }
                guard let failure = outcome.failure else { continue }
                engine.metrics.failed(failure.error)
                switch planner.failed(failure.error, lost: failure.lost, rolledBack: failure.error.rolledBackTo != nil) {
                case .fail(let error):
                    throw RunFailure(completed: results, error: error)
                case .respawn(let shards, let checkpoint):
                    do { try await recover(shards, cause: failure.error) } catch {
                        throw RunFailure(completed: results, error: error)
                    }
                    engine.metrics.rolledBack(toCheckpoint: true)
                    results.removeAll { $0.tick > checkpoint }
                case .restoreCheckpoint(let checkpoint):
                    do { try await restoreLastCheckpoint() } catch {
                        throw RunFailure(completed: results, error: error)
                    }
                    engine.metrics.rolledBack(toCheckpoint: true)
                    results.removeAll { $0.tick > checkpoint }
                    throw RunFailure(completed: results, error: .rolledBack(to: checkpoint, cause: failure.error))
                }
            }
        }
    }

    /// The combined digest of every shard's state (`StateDigest.combine`), remote shards included.
    public func stateDigest() async throws(RunnerError) -> UInt64 {
        try await exclusive { () async throws(RunnerError) -> UInt64 in
            try await self.awaitIdle()
            var digests: [UInt64] = []
            for slot in self.engine.slots {
                switch slot.member {
                case .local(let s): digests.append(s.stateDigest())
                case .remote(let r):
                    digests.append(try await r.stateDigest(stamp: self.coordinator.hlc.tick(),
                                                           timeout: self.configuration.remoteCallTimeout))
                }
            }
            return StateDigest.combine(digests)
        }
    }

    /// A copy of one shard's ghost cache (nil for a shard the runner does not run).
    public func ghostCache(of shard: ShardID) async -> GhostCache? {
        try? await exclusive { () async throws(RunnerError) -> GhostCache? in
            try await self.awaitIdle()
            self.engine.flushPendingInstalls()
            return self.engine.position(of: shard).map { self.engine.slots[$0].ghosts.cache.withLock { $0 } }
        }
    }

    /// Deregisters `shard` from the coordinator; it leaves now (a remote shard's server is told
    /// to stop), and every ghost copy of its nodes is dropped.
    /// - Throws: `RunnerError.notRegistered` when it is not registered (e.g. removed twice).
    public func removeShard(_ shard: ShardID) async throws(RunnerError) {
        try await exclusive { () async throws(RunnerError) in
            try await self.awaitIdle()
            try self.coordinator.deregister(shard)
            for r in self.engine.reconcileMembership() { r.stop() }
        }
    }

    /// Stops the runner: refuses new operations and waits for a launch still running (a phase
    /// that timed out) to end. The runner owns no thread: its shards ran on the tasklet pool.
    /// Remote shard servers are stopped by their `ShardServerListener`. Idempotent.
    public func shutdown() async {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        await operations.lock()
        operations.unlock()
        _ = await inFlight.waitUntilIdle(limit: nil)
    }

    // MARK: Shell

    /// Runs `body` as the only operation in progress.
    func exclusive<T>(_ body: () async throws(RunnerError) -> T) async throws(RunnerError) -> T {
        guard !isShutDown.load(ordering: .acquiring) else { throw .shutDown }
        await operations.lock()
        defer { operations.unlock() }
        guard !isShutDown.load(ordering: .acquiring) else { throw .shutDown }
        return try await body()
    }

    /// Waits (up to the phase timeout) for a launch still in flight.
    func awaitIdle() async throws(RunnerError) {
        if let busy = await inFlight.waitUntilIdle(limit: configuration.phaseTimeout) {
            throw .shardsBusy(shards: busy, tick: coordinator.currentTick + 1)
        }
    }

    /// Runs up to `count` ticks in one pool launch, watched for timeouts from outside it.
    private func runSegment(_ count: Int) async -> SegmentOutcome {
        let completion = SegmentCompletion()
        let engine = self.engine
        let inFlight = self.inFlight
        let pool = configuration.pool
        let lanes = engine.laneCount
        inFlight.begin()
        Task {
            var outcome: SegmentOutcome
            do {
                outcome = try await pool.launch(workers: lanes, shared: engine, scratch: { @Sendable _ in () }) { coord in
                    engine.runTicks(coord, count: count, completion: completion, inFlight: inFlight)
                }
            } catch {
                outcome = SegmentOutcome(results: completion.results, failure: SegmentFailure(
                    error: .invalidConfiguration("the tasklet pool did not run the runner's launch: \(error)"),
                    tick: self.coordinator.currentTick + 1))
            }
            if let failure = outcome.failure {
                outcome.failure = await self.finishRollback(failure)
            }
            completion.resolve(failure: outcome.failure)
            inFlight.end()
        }
        let watchdog = Task { await engine.watch(completion: completion, inFlight: inFlight) }
        let outcome = await completion.wait()
        watchdog.cancel()
        return outcome
    }

    /// Rolls remote shards back after the launch rolled the in-process ones back; names the
    /// rollback in the error when every shard went back.
    private func finishRollback(_ failure: SegmentFailure) async -> SegmentFailure {
        var f = failure
        guard f.rollbackPossible, f.localRolledBack else { return f }
        for id in f.remoteRollbacks {
            guard let p = engine.position(of: id), let remote = engine.slots[p].remote else { continue }
            do {
                try await remote.rollback(toStartOf: f.tick, stamp: coordinator.hlc.tick(),
                                          timeout: configuration.remoteCallTimeout)
            } catch {
                configuration.logger.error("remote rollback failed", metadata: ["shard": "\(id)", "error": "\(error)"])
                f.rollbackPossible = false
                f.error = .snapshotFailed(shard: id, operation: "rollback after \(f.error)", reason: "\(error)")
                return f
            }
        }
        f.error = .rolledBack(to: f.tick - 1, cause: f.error)
        // Counted here, not where `run` sees the failure: a tick that timed out is answered
        // before its stragglers return and it is rolled back.
        engine.metrics.rolledBack(toCheckpoint: false)
        return f
    }

    /// Runs a lane operation on the pool (snapshots, restores) over every in-process shard.
    func onLanes(_ op: LaneOperation) async throws(RunnerError) {
        guard !engine.localSlots.isEmpty else { return }
        let engine = self.engine
        do {
            _ = try await configuration.pool.launch(workers: engine.laneCount, shared: engine,
                                                    scratch: { @Sendable _ in () }) { coord in
                engine.runOnLanes(coord, op)
            }
        } catch {
            throw .invalidConfiguration("the tasklet pool did not run the runner's launch: \(error)")
        }
    }

    func noteCheckpoint(directory: String, tick: UInt64) {
        lastCheckpoint.withLock { $0 = (directory, tick) }
    }
}
