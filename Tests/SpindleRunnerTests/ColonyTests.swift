import SpindleKernel
import Testing
@testable import SpindleRunner

/// Runs the colony in-process on `shardCount` shards; returns the digest and the summed summary.
func runColony(shards shardCount: Int, ticks: Int, configuration: ColonyConfiguration,
               parallelism: Int = 4) async throws -> (digest: UInt64, summary: ColonySummary, edges: Int) {
    let coordinator = Coordinator()
    let shards = try ColonyShard.makeShards(count: shardCount, configuration: configuration, coordinator: coordinator)
    let runner = try DistributedRunner(coordinator: coordinator, shards: shards,
                                       configuration: RunnerConfiguration(parallelism: parallelism))
    let results = try await runner.run(ticks)
    let digest = try await runner.stateDigest()
    await runner.shutdown()
    let sum = shards.map(\.summary).reduce(ColonySummary(nodes: 0, agents: 0, totalSignal: 0, totalTrail: 0)) {
        ColonySummary(nodes: $0.nodes + $1.nodes, agents: $0.agents + $1.agents,
                      totalSignal: $0.totalSignal &+ $1.totalSignal, totalTrail: $0.totalTrail &+ $1.totalTrail)
    }
    return (digest, sum, results.reduce(0) { $0 + $1.crossShardEdges.count })
}

@Suite("Colony model")
struct ColonyTests {
    let configuration = ColonyConfiguration(seed: 0x5EED, nodeCount: 300, agentCount: 80)

    @Test("the final state is identical for 1, 2, 4 and 8 shards")
    func shardCountInvariance() async throws {
        let one = try await runColony(shards: 1, ticks: 40, configuration: configuration)
        #expect(one.summary.agents == 80 && one.summary.nodes == 300)
        #expect(one.edges == 0)
        #expect(one.summary.totalTrail > 0 && one.summary.totalSignal > 0)
        for n in [2, 4, 8] {
            let many = try await runColony(shards: n, ticks: 40, configuration: configuration, parallelism: n % 3 + 1)
            #expect(many.digest == one.digest, "\(n) shards diverged from 1 shard")
            #expect(many.summary == one.summary)
            #expect(many.edges > 0, "\(n) shards: no agent ever crossed a shard")
        }
    }

    @Test("the state depends on the seed and on the number of ticks")
    func sensitivity() async throws {
        let a = try await runColony(shards: 2, ticks: 10, configuration: configuration)
        var other = configuration
        other.seed += 1
        let b = try await runColony(shards: 2, ticks: 10, configuration: other)
        let c = try await runColony(shards: 2, ticks: 11, configuration: configuration)
        #expect(a.digest != b.digest)
        #expect(a.digest != c.digest)
    }
}
