import SpindleEventLoop
import SpindleKernel
import SpindleTCP
import SpindleTasklets
import Synchronization
import Testing
@testable import SpindleRunner

#if canImport(Glibc)
import Glibc
#endif

/// Rollback of failed ticks, partial results, timeouts on every remote call, and respawning
/// lost remote shards from the last checkpoint.
@Suite("Recovery: rollback, partial runs, respawn")
struct RecoveryTests {
    static let colony = ColonyConfiguration(seed: 0xBEEF, nodeCount: 256, agentCount: 80)
    static var colonyArguments: [String] { ["--seed", "\(0xBEEF)", "--nodes", "256", "--agents", "80"] }

    /// Colony shards where `shard` throws once at `tick`, after its Act has already changed its state.
    func flakyColony(_ n: Int, failing shard: UInt64, at tick: UInt64, coordinator: Coordinator,
                     phase: Phase = .act) throws -> (shards: [any Shard], once: Once) {
        let once = Once()
        let shards: [any Shard] = try colonyShards(n, Self.colony, .consistentHashing, coordinator: coordinator).map { s in
            guard s.id == ShardID(shard) else { return s }
            return HookedShard(s, afterAct: { c in
                if c.tick == tick, once.fire() { throw Injected(what: "injected failure in act") }
            })
        }
        return (shards, once)
    }

    @Test("a shard throwing in Act: the tick fails naming it, every shard rolls back, the retry gives the uninterrupted digest")
    func actFailureRollsBack() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 12)
        let coordinator = Coordinator()
        let (shards, once) = try flakyColony(4, failing: 3, at: 7, coordinator: coordinator)
        let runner = try DistributedRunner(coordinator: coordinator, shards: shards)
        _ = try await runner.run(6)
        let before = try await runner.stateDigest()
        do {
            _ = try await runner.tick()
            Issue.record("tick 7 did not fail")
        } catch {
            #expect(error == .rolledBack(to: 6, cause: .shardFailed(shard: ShardID(3), phase: .act, tick: 7,
                                                                     reason: "injected failure in act")))
            #expect(error.description.contains("shard-3") && error.description.contains("rolled back to tick 6"))
        }
        #expect(once.fired && coordinator.currentTick == 6)
        #expect(try await runner.stateDigest() == before, "the other shards' Act of tick 7 was undone")
        let rest = try await runner.run(6)
        #expect(rest.map(\.tick) == Array(7...12))
        #expect(try await runner.stateDigest() == reference)
        await runner.shutdown()
    }

    @Test("remote shards roll back in their servers too")
    func remoteRollback() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 10)
        let coordinator = Coordinator()
        let (shards, _) = try flakyColony(3, failing: 2, at: 5, coordinator: coordinator)
        let transport = InProcessTransport()
        let final = try await withShardHosts(Array(shards[0..<2]), transport: transport, address: .inproc(name: "rollback"),
                                             coordinator: coordinator) { _, remotes in
            // Shards 1 and 2 (the flaky one) in servers, shard 3 in this process.
            let runner = try DistributedRunner(coordinator: coordinator,
                                               members: remotes.map { .remote($0) } + [.local(shards[2])])
            do {
                _ = try await runner.run(10)
                Issue.record("the run did not fail")
            } catch let error as RunFailure {
                #expect(error.completed.map(\.tick) == [1, 2, 3, 4], "the completed ticks come back")
                #expect(error.error.rolledBackTo == 4)
                guard case .shardFailed(let shard, .act, 5, _) = error.error.rootCause else {
                    Issue.record("unexpected \(error)")
                    return UInt64(0)
                }
                #expect(shard == ShardID(2))
            }
            let rest = try await runner.run(6)
            #expect(rest.map(\.tick) == Array(5...10))
            let d = try await runner.stateDigest()
            await runner.shutdown()
            return d
        }
        await transport.shutdown()
        #expect(final == reference)
    }

    @Test("run(n) returns the completed ticks with the failing tick's error")
    func partialRun() async throws {
        let coordinator = Coordinator()
        let (shards, _) = try flakyColony(2, failing: 1, at: 4, coordinator: coordinator)
        let runner = try DistributedRunner(coordinator: coordinator, shards: shards)
        do {
            _ = try await runner.run(10)
            Issue.record("the run did not fail")
        } catch {
            #expect(error.completed.map(\.tick) == [1, 2, 3])
            #expect(error.error == .rolledBack(to: 3, cause: .shardFailed(shard: ShardID(1), phase: .act, tick: 4,
                                                                          reason: "injected failure in act")))
            #expect(error.description.contains("ticks 1…3 completed"))
        }
        await runner.shutdown()
    }

    @Test("a tick that timed out is rolled back once the straggler returns; running it again gives the uninterrupted digest")
    func timeoutRollsBack() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 6)
        let latch = TestLatch()
        let once = Once()
        let coordinator = Coordinator()
        let shards: [any Shard] = try colonyShards(3, Self.colony, .consistentHashing, coordinator: coordinator).map { s in
            guard s.id == ShardID(2) else { return s }
            // Shard 2 finishes its Act of tick 4, then hangs past the phase timeout.
            return HookedShard(s, afterAct: { c in if c.tick == 4, once.fire() { latch.wait(seconds: 30) } })
        }
        // A pool of its own: the straggler holds its launch until released.
        let pool = TaskletPool()
        var configuration = RunnerConfiguration(phaseTimeout: .seconds(1))
        configuration.pool = pool
        let runner = try DistributedRunner(coordinator: coordinator, shards: shards, configuration: configuration)
        _ = try await runner.run(3)
        do {
            _ = try await runner.tick()
            Issue.record("tick 4 did not time out")
        } catch {
            guard case .phaseTimedOut(.act, 4, let missing, _, .phase) = error else {
                Issue.record("unexpected \(error)")
                latch.release()
                return
            }
            #expect(missing.contains(ShardID(2)) && !missing.contains(ShardID(1)), "\(missing)")
        }
        latch.release()
        let rest = try await runner.run(3)
        #expect(rest.map(\.tick) == [4, 5, 6])
        #expect(try await runner.stateDigest() == reference)
        await runner.shutdown()
        await pool.shutdown()
    }

    @Test("Rollback.lastCheckpoint: a failed tick takes every shard back to the last checkpoint")
    func rollbackToCheckpoint() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 9)
        try await withTemporaryDirectory { dir in
            let coordinator = Coordinator()
            let (shards, _) = try flakyColony(3, failing: 1, at: 7, coordinator: coordinator)
            var configuration = RunnerConfiguration()
            configuration.rollback = .lastCheckpoint
            let runner = try DistributedRunner(coordinator: coordinator, shards: shards, configuration: configuration)
            _ = try await runner.run(4)
            try await runner.checkpoint(to: dir)
            do {
                _ = try await runner.run(5)
                Issue.record("the run did not fail")
            } catch let error as RunFailure {
                #expect(error.error.rolledBackTo == 4, "\(error)")
                #expect(error.completed.isEmpty, "ticks 5 and 6 were undone: \(error.completed.map(\.tick))")
            }
            #expect(coordinator.currentTick == 4)
            _ = try await runner.run(5)
            #expect(try await runner.stateDigest() == reference)
            await runner.shutdown()
        }
    }

    @Test("a remote call that gets no answer times out naming the shard and the call")
    func remoteCallTimeout() async throws {
        let latch = TestLatch()
        final class SlowDigest: Shard {
            let id = ShardID(1)
            let latch: TestLatch
            init(_ latch: TestLatch) { self.latch = latch }
            func sense(_ context: ShardContext) throws -> Int { 0 }
            func act(_ context: ShardContext, output: inout ActOutput) throws -> Int { 0 }
            func decay(_ context: ShardContext) throws -> Int { 0 }
            func stateDigest() -> UInt64 {
                latch.wait(seconds: 30)
                return 7
            }
        }
        let transport = InProcessTransport()
        let coordinator = Coordinator()
        try await withShardHosts([SlowDigest(latch)], transport: transport, address: .inproc(name: "slow-digest"),
                                 coordinator: coordinator) { _, remotes in
            var configuration = RunnerConfiguration()
            configuration.remoteCallTimeout = .milliseconds(300)
            let runner = try DistributedRunner(coordinator: coordinator, members: [.remote(remotes[0])],
                                               configuration: configuration)
            let started = SystemClock().now()
            await #expect(throws: RunnerError.remoteTimedOut(shard: ShardID(1), operation: "the state digest",
                                                             limit: .milliseconds(300))) {
                try await runner.stateDigest()
            }
            #expect(SystemClock().now() - started < .seconds(20))
            latch.release()
            await runner.shutdown()
        }
        await transport.shutdown()
    }

    @Test("removeShard stops the remote shard's server")
    func removeStopsServer() async throws {
        let transport = InProcessTransport()
        let coordinator = Coordinator()
        let listener = try await ShardServerListener.listen(on: .inproc(name: "remove"), transport: transport, hlc: coordinator.hlc)
        let host = try await ShardHost.serve(IdleShard(id: ShardID(2)), coordinator: listener.address, transport: transport)
        let remotes = try await listener.waitForShards(count: 1, timeout: .seconds(20))
        let runner = try DistributedRunner(coordinator: coordinator, members: [.local(IdleShard(id: ShardID(1))), .remote(remotes[0])])
        _ = try await runner.run(2)
        try await runner.removeShard(ShardID(2))
        #expect(await host.waitUntilDone() == .stopped)
        #expect(try await runner.tick().shards.map(\.shard) == [ShardID(1)])
        await runner.shutdown()
        await host.shutdown()
        listener.shutdown()
        await transport.shutdown()
    }

    @Test("the barrier's idle timeout is off by default: a round times out only at the phase timeout")
    func idleTimeoutDefault() {
        let clock = ManualClock()
        let coordinator = Coordinator(clock: clock)
        var barrier = coordinator.makeBarrier(phaseTimeout: .seconds(30))
        let round = barrier.begin(tick: 1, phase: .act, shards: [ShardID(1), ShardID(2)], now: clock.now())
        clock.advance(by: .seconds(29))
        #expect(barrier.poll(now: clock.now()) == .waiting(deadline: MonotonicInstant.zero + .seconds(30)))
        _ = barrier.arrive(ShardID(1), round: round, now: clock.now())
        clock.advance(by: .seconds(1))
        guard case .timedOut(.phaseTimedOut(.act, 1, [ShardID(2)], _, .phase(.seconds(30)))) = barrier.poll(now: clock.now()) else {
            Issue.record("expected the phase timeout")
            return
        }
        // An idle timeout longer than the phase timeout never decides.
        var long = PhaseBarrier(phaseTimeout: .seconds(5), idleTimeout: .seconds(50))
        long.begin(tick: 1, phase: .sense, shards: [ShardID(1)], now: .zero)
        guard case .timedOut(.phaseTimedOut(_, _, _, _, .phase)) = long.poll(now: .zero + .seconds(5)) else {
            Issue.record("expected the phase limit")
            return
        }
    }

    @Test("a remote shard that stops answering (its host is lost) is respawned under the policy; the digest is the uninterrupted one")
    func respawnAfterSilence() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 12)
        let latch = TestLatch()
        let once = Once()
        let coordinator = Coordinator()
        let shards = try colonyShards(3, Self.colony, .consistentHashing, coordinator: coordinator)
        let placement = coordinator.placement
        // Shard 2's first server hangs in its Act of tick 6 and never answers.
        let hanging = HookedShard(shards[1], afterAct: { c in if c.tick == 6, once.fire() { latch.wait(seconds: 60) } })
        let transport = InProcessTransport()
        let started = Mutex<[ShardHost]>([])
        try await withTemporaryDirectory { dir in
            try await withShardHosts([shards[0], hanging], transport: transport, address: .inproc(name: "silent"),
                                     coordinator: coordinator) { listener, remotes in
                defer { latch.release() }
                var configuration = RunnerConfiguration(phaseTimeout: .seconds(1))
                configuration.checkpointEvery = 4
                configuration.checkpointDirectory = dir
                configuration.recovery = .respawn(maxAttempts: 2)
                configuration.launcher = { id, _ in
                    let fresh = ColonyShard(id: id, configuration: Self.colony, placement: placement)
                    let host = try await ShardHost.serve(fresh, coordinator: listener.address, transport: transport)
                    started.withLock { $0.append(host) }
                    return try await listener.waitForShard(id, timeout: .seconds(20))
                }
                let runner = try DistributedRunner(coordinator: coordinator,
                                                   members: remotes.map { .remote($0) } + [.local(shards[2])],
                                                   configuration: configuration)
                let results = try await runner.run(12)
                #expect(results.map(\.tick) == Array(1...12))
                #expect(once.fired && started.withLock { $0.count } == 1, "shard 2 got a new server")
                #expect(try await runner.stateDigest() == reference)
                await runner.shutdown()
            }
        }
        for host in started.withLock({ $0 }) { await host.shutdown() }
        latch.release()
        await transport.shutdown()
    }

    // MARK: The run planner

    @Test("the planner checkpoints at 0 and every n ticks, and cuts launches at checkpoints")
    func plannerSegments() {
        var p = RunPlanner(target: 11, checkpointEvery: 4, lastCheckpoint: nil, recovery: .fail, rollback: .tickStart)
        #expect(p.next(currentTick: 0) == .checkpoint(at: 0))
        p.checkpointed(at: 0)
        #expect(p.next(currentTick: 0) == .runTicks(4))
        #expect(p.next(currentTick: 4) == .checkpoint(at: 4))
        p.checkpointed(at: 4)
        #expect(p.next(currentTick: 4) == .runTicks(4))
        #expect(p.next(currentTick: 6) == .runTicks(2))
        p.checkpointed(at: 8)
        #expect(p.next(currentTick: 8) == .runTicks(3))
        #expect(p.next(currentTick: 11) == .done)
        let plain = RunPlanner(target: 7, checkpointEvery: nil, lastCheckpoint: nil, recovery: .fail, rollback: .tickStart)
        #expect(plain.next(currentTick: 2) == .runTicks(5))
    }

    @Test("the planner respawns lost shards from the last checkpoint, at most maxAttempts times per shard")
    func plannerRecovery() {
        let lost = RunnerError.shardLost(shard: ShardID(2), tick: 9, reason: "gone")
        var none = RunPlanner(target: 20, checkpointEvery: 4, lastCheckpoint: 8, recovery: .fail, rollback: .tickStart)
        #expect(none.failed(lost, lost: [ShardID(2)], rolledBack: false) == .fail(lost))
        var p = RunPlanner(target: 20, checkpointEvery: 4, lastCheckpoint: 8, recovery: .respawn(maxAttempts: 2), rollback: .tickStart)
        #expect(p.failed(lost, lost: [ShardID(2)], rolledBack: false) == .respawn([ShardID(2)], from: 8))
        #expect(p.failed(lost, lost: [ShardID(2)], rolledBack: false) == .respawn([ShardID(2)], from: 8))
        guard case .fail(.recoveryFailed(ShardID(2), 9, _, lost)) = p.failed(lost, lost: [ShardID(2)], rolledBack: false) else {
            Issue.record("a third loss was not refused")
            return
        }
        var noCheckpoint = RunPlanner(target: 20, checkpointEvery: nil, lastCheckpoint: nil,
                                      recovery: .respawn(maxAttempts: 2), rollback: .tickStart)
        guard case .fail(.recoveryFailed(_, _, let why, _)) = noCheckpoint.failed(lost, lost: [ShardID(2)], rolledBack: false) else {
            Issue.record("respawn without a checkpoint")
            return
        }
        #expect(why.contains("no checkpoint"))
        let thrown = RunnerError.shardFailed(shard: ShardID(1), phase: .act, tick: 5, reason: "x")
        var back = RunPlanner(target: 20, checkpointEvery: nil, lastCheckpoint: 3, recovery: .fail, rollback: .lastCheckpoint)
        #expect(back.failed(thrown, lost: [], rolledBack: false) == .restoreCheckpoint(3))
        #expect(back.failed(.rolledBack(to: 4, cause: thrown), lost: [], rolledBack: true) == .fail(.rolledBack(to: 4, cause: thrown)))
    }

    // MARK: Shard processes

    @Test("kill -9 of a shard process mid-run: with respawn the run finishes with the uninterrupted digest")
    func respawnAfterKill() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 20)
        try await withTemporaryDirectory { dir in
            try await withShardCluster(remote: 3, of: 4, arguments: Self.colonyArguments) { cluster, coordinator in
                let runner = try killingRunner(cluster, coordinator: coordinator, killAt: 10) {
                    $0.checkpointEvery = 4
                    $0.checkpointDirectory = dir
                    $0.recovery = .respawn(maxAttempts: 2)
                    $0.launcher = { id, _ in
                        try await cluster.spawn(id)
                        return try await cluster.listener.waitForShard(id, timeout: .seconds(30))
                    }
                }
                let results = try await runner.run(20)
                #expect(results.map(\.tick) == Array(1...20), "each tick once, in order")
                #expect(try await runner.stateDigest() == reference)
                #expect(cluster.spawned(ShardID(2)) == 2, "shard 2's server was started again")
                await runner.shutdown()
            }
        }
    }

    @Test("kill -9 of a shard process mid-run without a recovery policy: the error names the shard and the tick")
    func killWithoutPolicy() async throws {
        try await withShardCluster(remote: 3, of: 4, arguments: Self.colonyArguments) { cluster, coordinator in
            let runner = try killingRunner(cluster, coordinator: coordinator, killAt: 6) { _ in }
            do {
                _ = try await runner.run(12)
                Issue.record("the run survived a dead shard without a policy")
            } catch let error as RunFailure {
                guard case .shardLost(let shard, let tick, _) = error.error else {
                    Issue.record("unexpected \(error)")
                    return
                }
                #expect(shard == ShardID(2) && tick == 6)
                #expect(error.error.description.contains("shard-2") && error.error.description.contains("tick 6"))
                #expect(error.completed.map(\.tick) == Array(1...5))
            }
            await runner.shutdown()
        }
    }

    /// A runner over the cluster's three shard processes (1…3) and an in-process shard 4 that
    /// kills shard 2's process in its Act of tick `killAt` (once).
    private func killingRunner(_ cluster: ShardCluster, coordinator: Coordinator, killAt: UInt64,
                               _ configure: (inout RunnerConfiguration) -> Void) throws -> DistributedRunner {
        let once = Once()
        let placement = ShardPlacement(shards: (1...4).map { ShardID(UInt64($0)) })
        let local = HookedShard(ColonyShard(id: ShardID(4), configuration: Self.colony, placement: placement), beforeAct: { c in
            if c.tick == killAt, once.fire() { cluster.kill(ShardID(2)) }
        })
        var configuration = RunnerConfiguration(phaseTimeout: .seconds(30))
        configure(&configuration)
        return try DistributedRunner(coordinator: coordinator,
                                     members: cluster.initial.map { .remote($0) } + [.local(local)],
                                     configuration: configuration)
    }
}

/// `spindle-shard` processes serving shards of one colony to a TCP listener on 127.0.0.1:0,
/// with a way to start another process for a shard (respawn) and to kill one.
final class ShardCluster: Sendable {
    let executable: String
    let loop: EventLoop
    let transport: TCPTransport
    let listener: ShardServerListener
    let arguments: [String]
    let total: Int
    private let children = Mutex<[(ShardID, ChildProcess)]>([])
    private let first = Mutex<[RemoteShard]>([])

    init(executable: String, loop: EventLoop, transport: TCPTransport, listener: ShardServerListener,
         arguments: [String], total: Int) {
        self.executable = executable
        self.loop = loop
        self.transport = transport
        self.listener = listener
        self.arguments = arguments
        self.total = total
    }

    var initial: [RemoteShard] { first.withLock { $0 } }
    func setInitial(_ r: [RemoteShard]) { first.withLock { $0 = r } }

    /// Starts a server process for `shard`.
    func spawn(_ shard: ShardID) async throws {
        var options = ProcessOptions(executable: executable, arguments: [
            "--coordinator", "\(listener.address)", "--shard", "\(shard.value)", "--shards", "\(total)"] + arguments)
        options.stdin = .ignore
        options.stdout = .ignore
        options.stderr = .inherit
        options.parentDeathSignal = SIGKILL
        let child = try await ChildProcess.spawn(on: loop, options)
        children.withLock { $0.append((shard, child)) }
    }

    /// How many processes were started for `shard`.
    func spawned(_ shard: ShardID) -> Int { children.withLock { $0.filter { $0.0 == shard }.count } }

    /// SIGKILLs the newest process of `shard`.
    func kill(_ shard: ShardID) {
        let child = children.withLock { $0.last { $0.0 == shard }?.1 }
        try? child?.kill(SIGKILL)
    }

    /// Stops every server (they exit when told), kills what does not exit, reaps everything.
    func shutdown() async {
        listener.shutdown()
        for (_, c) in children.withLock({ $0 }) {
            let exited = await withTaskGroup(of: Bool.self) { g in
                g.addTask { _ = await c.wait(); return true }
                g.addTask { try? await Task.sleep(for: .seconds(10)); return false }
                let first = await g.next() ?? false
                g.cancelAll()
                return first
            }
            if !exited {
                try? c.kill(SIGKILL)
                _ = await c.wait()
            }
        }
        await transport.shutdown()
        await loop.shutdown()
    }
}

/// Starts `remote` server processes for shards 1…remote of a colony of `of` shards, runs `body`,
/// and always stops and reaps every process.
func withShardCluster<T>(remote: Int, of total: Int, arguments: [String],
                         _ body: (ShardCluster, Coordinator) async throws -> T) async throws -> T {
    let executable = try shardServerExecutable()
    let loop = try EventLoop(name: "shard-cluster")
    let transport = try TCPTransport(loopCount: 1)
    let coordinator = Coordinator()
    let listener: ShardServerListener
    do {
        listener = try await ShardServerListener.listen(on: .tcp(host: "127.0.0.1", port: 0), transport: transport,
                                                       hlc: coordinator.hlc)
    } catch {
        await transport.shutdown()
        await loop.shutdown()
        throw error
    }
    let cluster = ShardCluster(executable: executable, loop: loop, transport: transport, listener: listener,
                               arguments: arguments, total: total)
    do {
        for i in 1...remote { try await cluster.spawn(ShardID(UInt64(i))) }
        cluster.setInitial(try await listener.waitForShards(count: remote, timeout: .seconds(60)))
        let result = try await body(cluster, coordinator)
        await cluster.shutdown()
        return result
    } catch {
        await cluster.shutdown()
        throw error
    }
}
