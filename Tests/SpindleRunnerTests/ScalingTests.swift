import SpindleKernel
import SpindleTasklets
import Synchronization
import Testing
@testable import SpindleRunner

/// The runner's scaling machinery: shards as work items on the tasklet pool, batched
/// cross-shard traffic, both placements — and the same final state whatever the partitioning.
@Suite("Scaling: shard counts, placements, in-process and remote")
struct ScalingTests {
    static let colony = ColonyConfiguration(seed: 0xC0FFEE, nodeCount: 300, agentCount: 90)
    static let ticks = 18

    static func strategy(_ name: String) -> PlacementStrategy {
        name == "ranges" ? colony.localityPlacement : .consistentHashing
    }

    @Test("in-process: the digest is identical for 1, 2, 3, 4 and 8 shards", arguments: ["hashed", "ranges"])
    func inProcessDigests(placement: String) async throws {
        let reference = try await referenceDigest(Self.colony, ticks: Self.ticks)
        for n in [1, 2, 3, 4, 8] {
            let coordinator = Coordinator()
            let shards = try colonyShards(n, Self.colony, Self.strategy(placement), coordinator: coordinator)
            let runner = try DistributedRunner(coordinator: coordinator, shards: shards,
                                               configuration: RunnerConfiguration(placement: Self.strategy(placement)))
            let results = try await runner.run(Self.ticks)
            let digest = try await runner.stateDigest()
            await runner.shutdown()
            #expect(results.map(\.tick) == Array(1...UInt64(Self.ticks)))
            #expect(digest == reference, "\(n) shards, \(placement) placement diverged")
            if n > 1 { #expect(results.contains { !$0.crossShardEdges.isEmpty }, "\(n) shards: no agent crossed") }
        }
    }

    @Test("remote (shard servers over the in-process transport): the digest is identical for 1, 2, 3, 4 and 8 shards",
          arguments: ["hashed", "ranges"])
    func remoteDigests(placement: String) async throws {
        let reference = try await referenceDigest(Self.colony, ticks: Self.ticks)
        for n in [1, 2, 3, 4, 8] {
            let coordinator = Coordinator()
            let shards = try colonyShards(n, Self.colony, Self.strategy(placement), coordinator: coordinator)
            let transport = InProcessTransport()
            let digest = try await withShardHosts(shards, transport: transport, address: .inproc(name: "scale-\(placement)-\(n)"),
                                                  coordinator: coordinator) { _, remotes in
                let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) },
                                                   configuration: RunnerConfiguration(placement: Self.strategy(placement)))
                let results = try await runner.run(Self.ticks)
                #expect(results.map(\.tick) == Array(1...UInt64(Self.ticks)))
                let d = try await runner.stateDigest()
                await runner.shutdown()
                return d
            }
            await transport.shutdown()
            #expect(digest == reference, "\(n) remote shards, \(placement) placement diverged")
        }
    }

    @Test("on a plain ring, ranges placement keeps agents' moves inside shards; hashing sends most across")
    func localityReducesTraffic() async throws {
        let ring = ColonyConfiguration(seed: 9, nodeCount: 400, agentCount: 120, chordsPerNode: 0)
        var crossings: [String: Int] = [:]
        let reference = try await referenceDigest(ring, ticks: 6)
        for (name, strategy) in [("hashed", PlacementStrategy.consistentHashing), ("ranges", ring.localityPlacement)] {
            let coordinator = Coordinator()
            let shards = try colonyShards(4, ring, strategy, coordinator: coordinator)
            let runner = try DistributedRunner(coordinator: coordinator, shards: shards,
                                               configuration: RunnerConfiguration(placement: strategy))
            let results = try await runner.run(6)
            #expect(try await runner.stateDigest() == reference)
            await runner.shutdown()
            crossings[name] = results.reduce(0) { $0 + $1.crossShardEdges.count }
        }
        let hashed = try #require(crossings["hashed"]), ranges = try #require(crossings["ranges"])
        #expect(hashed > 100 && ranges * 10 < hashed, "agent crossings: ranges \(ranges), hashed \(hashed)")
    }

    @Test("8 shards on a 2-lane pool are 8 work items, not 8 threads")
    func shardsAreWorkItems() async throws {
        let pool = TaskletPool(configuration: TaskletPool.Configuration(maxLanes: 2))
        let coordinator = Coordinator()
        let inside = Atomic<Int>(0), peak = Atomic<Int>(0)
        let shards = try colonyShards(8, Self.colony, Self.colony.localityPlacement, coordinator: coordinator).map { s in
            HookedShard(s, beforeAct: { _ in
                let n = inside.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
                var p = peak.load(ordering: .relaxed)
                while n > p, !peak.compareExchange(expected: p, desired: n, ordering: .relaxed).exchanged {
                    p = peak.load(ordering: .relaxed)
                }
            }, afterAct: { _ in inside.subtract(1, ordering: .releasing) })
        }
        var configuration = RunnerConfiguration(parallelism: 2, placement: Self.colony.localityPlacement)
        configuration.pool = pool
        let runner = try DistributedRunner(coordinator: coordinator, shards: shards, configuration: configuration)
        _ = try await runner.run(6)
        let digest = try await runner.stateDigest()
        await runner.shutdown()
        // One lane thread beside the caller's lane, plus the pool's runner thread for async launches.
        #expect(pool.threadCount <= 2, "the pool started \(pool.threadCount) threads for 8 shards")
        #expect(peak.load(ordering: .relaxed) <= 2)
        #expect(digest == (try await referenceDigest(Self.colony, ticks: 6)))
        await pool.shutdown()
    }

    @Test("ranges placement: contiguous arcs covering the key space, in shard order")
    func rangesPlacement() {
        let p = ShardPlacement(shards: [ShardID(3), ShardID(1), ShardID(2)], strategy: .ranges(keyCount: 10))
        #expect(p.shards == [ShardID(1), ShardID(2), ShardID(3)])
        let owners = (0..<10 as Range<UInt64>).map { p.owner(of: NodeKey($0))! }
        #expect(owners == [1, 1, 1, 1, 2, 2, 2, 3, 3, 3].map { ShardID($0) })
        #expect(p.range(of: ShardID(1)) == 0..<4 && p.range(of: ShardID(2)) == 4..<7 && p.range(of: ShardID(3)) == 7..<10)
        #expect(p.owner(of: NodeKey(13)) == p.owner(of: NodeKey(3)), "keys past the count wrap around the ring")
        #expect(p != ShardPlacement(shards: [ShardID(1), ShardID(2), ShardID(3)]), "another strategy is another placement")
        #expect(p.adding(ShardID(4)).range(of: ShardID(4)) == 8..<10)
        #expect(ShardPlacement(shards: [], strategy: .ranges(keyCount: 5)).owner(of: NodeKey(1)) == nil)
        let huge = ShardPlacement(shards: [ShardID(1), ShardID(2)], strategy: .ranges(keyCount: .max))
        #expect(huge.owner(of: NodeKey(.max - 1)) == ShardID(2) && huge.owner(of: NodeKey(1)) == ShardID(1))
    }

    // MARK: Collectives

    static let agents = Collective<Int>.sum("agents")
    static let signal = Collective<Int64>.sum("signal")
    static let busiest = Collective<Int64>.max("busiest node")
    static let quietest = Collective<Int64>.min("quietest node")
    /// Not commutative: the concatenation of shard ids, in shard order.
    static let order = Collective<[UInt64]>("shard order") { $0 + $1 }

    /// A colony shard that contributes its totals in Decay and records what it sees in Sense.
    final class Reporting: Shard {
        let inner: ColonyShard
        let seen = Mutex<[UInt64: [String]]>([:])
        init(_ inner: ColonyShard) { self.inner = inner }
        var id: ShardID { inner.id }
        func sense(_ context: ShardContext) throws -> Int {
            let view = ["\(context.reduced(ScalingTests.agents) ?? -1)", "\(context.reduced(ScalingTests.signal) ?? -1)",
                        "\(context.reduced(ScalingTests.busiest) ?? -1)", "\(context.reduced(ScalingTests.quietest) ?? -1)"]
            seen.withLock { $0[context.tick] = view }
            return try inner.sense(context)
        }
        func act(_ context: ShardContext, output: inout ActOutput) throws -> Int { try inner.act(context, output: &output) }
        func deliver(_ delivery: ShardDelivery, context: ShardContext) throws { try inner.deliver(delivery, context: context) }
        func decay(_ context: ShardContext) throws -> Int {
            let n = try inner.decay(context)
            let summary = inner.summary
            context.contribute(summary.agents, to: ScalingTests.agents)
            context.contribute(summary.totalSignal, to: ScalingTests.signal)
            if let bounds = inner.signalBounds {
                context.contribute(bounds.max, to: ScalingTests.busiest)
                context.contribute(bounds.min, to: ScalingTests.quietest)
            }
            context.contribute([id.value], to: ScalingTests.order)
            return n
        }
        func stateDigest() -> UInt64 { inner.stateDigest() }
        func snapshot() throws -> [UInt8] { try inner.snapshot() }
        func restore(_ snapshot: [UInt8]) throws { try inner.restore(snapshot) }
    }

    static var collectives: [AnyCollective] { [agents.erased, signal.erased, busiest.erased, quietest.erased, order.erased] }

    @Test("allreduce: the same results for 1, 2, 3 and 8 shards and both placements, seen by every shard in the next Sense")
    func allreduceAcrossShardCounts() async throws {
        var reference: [String]? = nil
        for placement in ["hashed", "ranges"] {
            for n in [1, 2, 3, 8] {
                let coordinator = Coordinator()
                let shards = try colonyShards(n, Self.colony, Self.strategy(placement), coordinator: coordinator).map(Reporting.init)
                var configuration = RunnerConfiguration(placement: Self.strategy(placement))
                configuration.collectives = Self.collectives
                let runner = try DistributedRunner(coordinator: coordinator, shards: shards, configuration: configuration)
                let results = try await runner.run(6)
                await runner.shutdown()
                #expect(results[0].reduced(Self.agents) == Self.colony.agentCount, "agents are conserved")
                #expect(results.allSatisfy { $0.reduced(Self.agents) == Self.colony.agentCount })
                #expect(results[5].reduced(Self.order) == (1...UInt64(n)).map { $0 }, "combined in shard-id order")
                let totals = results.map { r in
                    "\(r.reduced(Self.agents)!) \(r.reduced(Self.signal)!) \(r.reduced(Self.busiest)!) \(r.reduced(Self.quietest)!)"
                }
                if let reference { #expect(totals == reference, "\(n) shards, \(placement)") } else { reference = totals }
                // Every shard saw tick t's results in the Sense of tick t + 1 (and nothing in tick 1).
                for s in shards {
                    let seen = s.seen.withLock { $0 }
                    #expect(seen[1] == ["-1", "-1", "-1", "-1"])
                    for t in 2...6 {
                        let r = results[t - 2]
                        #expect(seen[UInt64(t)] == ["\(r.reduced(Self.agents)!)", "\(r.reduced(Self.signal)!)",
                                                   "\(r.reduced(Self.busiest)!)", "\(r.reduced(Self.quietest)!)"])
                    }
                }
            }
        }
    }

    @Test("allreduce over remote shards equals in-process")
    func allreduceRemote() async throws {
        let local: [Int64] = try await {
            let coordinator = Coordinator()
            let shards = try colonyShards(3, Self.colony, .consistentHashing, coordinator: coordinator).map(Reporting.init)
            var configuration = RunnerConfiguration()
            configuration.collectives = Self.collectives
            let runner = try DistributedRunner(coordinator: coordinator, shards: shards, configuration: configuration)
            let results = try await runner.run(4)
            await runner.shutdown()
            return results.map { $0.reduced(Self.signal)! }
        }()
        let coordinator = Coordinator()
        let shards = try colonyShards(3, Self.colony, .consistentHashing, coordinator: coordinator).map(Reporting.init)
        let transport = InProcessTransport()
        let (remote, seen) = try await withShardHosts(shards, transport: transport, address: .inproc(name: "allreduce"),
                                                      coordinator: coordinator) { _, remotes in
            var configuration = RunnerConfiguration()
            configuration.collectives = Self.collectives
            let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) },
                                               configuration: configuration)
            let results = try await runner.run(4)
            await runner.shutdown()
            return (results.map { $0.reduced(Self.signal)! }, shards[1].seen.withLock { $0 })
        }
        await transport.shutdown()
        #expect(remote == local)
        #expect(seen[4]?[1] == "\(local[2])", "a remote shard read tick 3's result in tick 4's Sense")
    }

    @Test("a contribution to an unregistered collective fails the tick naming the shard and the collective")
    func unregisteredCollective() async throws {
        let coordinator = Coordinator()
        let shards = try colonyShards(2, Self.colony, .consistentHashing, coordinator: coordinator).map(Reporting.init)
        let runner = try DistributedRunner(coordinator: coordinator, shards: shards)
        do {
            _ = try await runner.tick()
            Issue.record("the tick did not fail")
        } catch {
            guard case .collectiveFailed(let name, let shard, let tick, _) = error.rootCause else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(name == "agents" && shard == ShardID(1) && tick == 1)
            #expect(error.rolledBackTo == 0, "\(error)")
        }
        await runner.shutdown()
    }
}

