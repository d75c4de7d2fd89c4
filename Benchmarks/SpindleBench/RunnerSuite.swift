// The `runner` suite: tick latency and colony throughput of SpindleRunner.
import Spindle

/// A shard whose phases do nothing: measures the runner's own cost per tick.
private final class EmptyShard: Shard {
    let id: ShardID
    init(_ id: UInt64) { self.id = ShardID(id) }
    func sense(_ context: ShardContext) throws -> Int { 0 }
    func act(_ context: ShardContext, output: inout ActOutput) throws -> Int { 0 }
    func decay(_ context: ShardContext) throws -> Int { 0 }
}

let runnerSuite = BenchSuite(name: "runner") { reporter in
    // Empty-phase tick latency, 4 in-process shards (3 barrier rounds per tick), with the default
    // spin before parking and with a longer one.
    for spin in [2_000, 50_000] {
        var config = RunnerConfiguration()
        config.spinIterations = spin
        let runner = try DistributedRunner(coordinator: Coordinator(), shards: (1...4).map { EmptyShard(UInt64($0)) },
                                           configuration: config)
        let perTick = try await measureAsync(iterations: 2_000) { n in blackHole(try await runner.run(n)) }
        await runner.shutdown()
        reporter.report(BenchResult(suite: "runner", benchmark: "empty tick, 4 in-process shards, spin \(spin / 1000)k",
                                    value: perTick * 1e6, unit: "µs/tick", higherIsBetter: false))
    }

    // Colony throughput with 1, 2 and 4 in-process shards.
    let colony = ColonyConfiguration(seed: 42, nodeCount: 4_096, agentCount: 1_024)
    var oneShard: Double? = nil
    for shards in [1, 2, 4] {
        let coordinator = Coordinator()
        let members = try ColonyShard.makeShards(count: shards, configuration: colony, coordinator: coordinator)
        let runner = try DistributedRunner(coordinator: coordinator, shards: members)
        let perTick = try await measureAsync(iterations: 200, rounds: 3) { n in blackHole(try await runner.run(n)) }
        // Where a tick's time goes: each phase's slowest shard, averaged over a sample of ticks.
        let sample = try await runner.run(50)
        await runner.shutdown()
        var slowest: [Phase: Double] = [:]
        for r in sample {
            for p in Phase.allCases {
                let worst = r.shards.compactMap { $0.phase(p)?.duration }.max() ?? .zero
                slowest[p, default: 0] += Double(worst.nanosecondsClamped) / 1e3 / Double(sample.count)
            }
        }
        reporter.note("colony, \(shards) shard(s): slowest shard per phase: sense \(fmt(slowest[.sense] ?? 0)) µs, "
                      + "act \(fmt(slowest[.act] ?? 0)) µs, decay \(fmt(slowest[.decay] ?? 0)) µs; "
                      + "\(sample.last?.crossShardEdges.count ?? 0) cross-shard edges in the last tick")
        let rate = 1 / perTick
        if oneShard == nil { oneShard = rate }
        reporter.report(BenchResult(suite: "runner", benchmark: "colony 4096 nodes, \(shards) shard\(shards == 1 ? "" : "s")",
                                    value: rate, unit: "ticks/s",
                                    baseline: shards == 1 ? nil : "1 shard", baselineValue: shards == 1 ? nil : oneShard,
                                    higherIsBetter: true))
    }
}
