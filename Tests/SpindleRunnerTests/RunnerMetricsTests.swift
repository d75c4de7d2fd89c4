import MetricsTestKit
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleRunner

/// What a runner publishes through swift-metrics (docs/operations.md, `spindle_runner_*`).
@Suite("Runner metrics", .timeLimit(.minutes(1)))
struct RunnerMetricsTests {
    func makeRunner(_ shards: [TestShard], metrics: TestMetrics, coordinator: Coordinator = Coordinator())
        throws -> DistributedRunner
    {
        var config = RunnerConfiguration(phaseTimeout: .seconds(20))
        config.metricsFactory = metrics
        return try DistributedRunner(coordinator: coordinator, shards: shards, configuration: config)
    }

    @Test("a run of ticks records one timer value per phase per tick, the tick count and the tick time")
    func phaseTimersAndTicks() async throws {
        let metrics = TestMetrics()
        let runner = try makeRunner([TestShard(1), TestShard(2), TestShard(3)], metrics: metrics)
        let results = try await runner.run(4)
        await runner.shutdown()
        #expect(results.count == 4)
        for phase in Phase.allCases {
            let timer = try metrics.expectTimer("spindle_runner_phase_duration", [("phase", phase.description)])
            #expect(timer.values.count == 4, "\(phase): one value per tick")
            #expect(timer.values.allSatisfy { $0 >= 0 })
        }
        #expect(try metrics.expectCounter("spindle_runner_ticks_total").totalValue == 4)
        let ticks = try metrics.expectTimer("spindle_runner_tick_duration")
        #expect(ticks.values.count == 4)
        // A tick spans its three phase rounds.
        let phases = try Phase.allCases.map {
            try metrics.expectTimer("spindle_runner_phase_duration", [("phase", $0.description)]).values
        }
        for t in 0..<4 {
            #expect(ticks.values[t] >= phases[0][t] + phases[1][t] + phases[2][t])
        }
        #expect(try metrics.expectCounter("spindle_runner_tick_failures_total", [("reason", "shard_failed")]).totalValue == 0)
    }

    @Test("a shard that throws counts a failed tick, not a completed one")
    func failedTick() async throws {
        struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }
        let thrown = Atomic<Bool>(false)
        let bad = TestShard(2, onAct: { c, _ in
            if c.tick == 2, !thrown.exchange(true, ordering: .relaxed) { throw Boom() }
        })
        let metrics = TestMetrics()
        let runner = try makeRunner([TestShard(1), bad], metrics: metrics)
        _ = try await runner.tick()
        await #expect(throws: RunnerError.self) { try await runner.tick() }
        let failures = try metrics.expectCounter("spindle_runner_tick_failures_total", [("reason", "shard_failed")])
        #expect(failures.totalValue == 1)
        #expect(try metrics.expectCounter("spindle_runner_ticks_total").totalValue == 1)
        // TestShard keeps no snapshot, so the failed tick could not be rolled back.
        #expect(try metrics.expectCounter("spindle_runner_rollbacks_total", [("to", "tick_start")]).totalValue == 0)
        // Every shard reached the barrier of the round whose Act threw, so that round is
        // timed; Decay of the failed tick never ran.
        #expect(try metrics.expectTimer("spindle_runner_phase_duration", [("phase", "sense")]).values.count == 2)
        #expect(try metrics.expectTimer("spindle_runner_phase_duration", [("phase", "act")]).values.count == 2)
        #expect(try metrics.expectTimer("spindle_runner_phase_duration", [("phase", "decay")]).values.count == 1)
        _ = try await runner.tick()
        #expect(try metrics.expectCounter("spindle_runner_ticks_total").totalValue == 2)
        #expect(failures.totalValue == 1)
        await runner.shutdown()
    }

    @Test("a failed tick that every shard rolled back to its start counts a rollback")
    func rollbackCounted() async throws {
        let coordinator = Coordinator()
        let once = Once()
        let colony = ColonyConfiguration(seed: 0xBEEF, nodeCount: 128, agentCount: 40)
        let shards: [any Shard] = try colonyShards(3, colony, .consistentHashing, coordinator: coordinator).map { s in
            guard s.id == ShardID(2) else { return s }
            return HookedShard(s, afterAct: { c in
                if c.tick == 3, once.fire() { throw Injected(what: "injected failure in act") }
            })
        }
        let metrics = TestMetrics()
        var config = RunnerConfiguration(phaseTimeout: .seconds(20))
        config.metricsFactory = metrics
        let runner = try DistributedRunner(coordinator: coordinator, shards: shards, configuration: config)
        _ = try await runner.run(2)
        do {
            _ = try await runner.tick()
            Issue.record("tick 3 did not fail")
        } catch {
            #expect(error.rolledBackTo == 2, "\(error)")
        }
        #expect(try metrics.expectCounter("spindle_runner_rollbacks_total", [("to", "tick_start")]).totalValue == 1)
        #expect(try metrics.expectCounter("spindle_runner_rollbacks_total", [("to", "checkpoint")]).totalValue == 0)
        #expect(try metrics.expectCounter("spindle_runner_tick_failures_total", [("reason", "shard_failed")]).totalValue == 1)
        _ = try await runner.run(2)
        #expect(try metrics.expectCounter("spindle_runner_ticks_total").totalValue == 4)
        await runner.shutdown()
    }

    @Test("edges and messages Act routes are counted")
    func routedEdges() async throws {
        let coordinator = Coordinator()
        try coordinator.register(ShardID(1))
        try coordinator.register(ShardID(2))
        let theirs = keys(ownedBy: ShardID(2), in: coordinator.placement, count: 2)
        let mine = keys(ownedBy: ShardID(1), in: coordinator.placement, count: 1)[0]
        let sender = TestShard(1, onAct: { _, out in
            for k in theirs { out.emitEdge(from: mine, to: k, weight: 1) }
            out.send([7], to: ShardID(2))
        })
        let metrics = TestMetrics()
        let runner = try makeRunner([sender, TestShard(2)], metrics: metrics, coordinator: coordinator)
        _ = try await runner.run(3)
        await runner.shutdown()
        #expect(try metrics.expectCounter("spindle_runner_cross_shard_edges_total").totalValue == 6)
        #expect(try metrics.expectCounter("spindle_runner_messages_total").totalValue == 3)
    }
}
