import SpindleKernel
import Synchronization
import Testing
@testable import SpindleRunner

@Suite("Distributed runner, in-process")
struct RunnerTests {
    func makeRunner(_ shards: [TestShard], _ configure: (inout RunnerConfiguration) -> Void = { _ in })
        throws -> DistributedRunner
    {
        var config = RunnerConfiguration(phaseTimeout: .seconds(20))
        configure(&config)
        return try DistributedRunner(coordinator: Coordinator(), shards: shards, configuration: config)
    }

    @Test("tick() gives tick 1 with every shard's three phases")
    func firstTick() async throws {
        let shards = (1...3).map { TestShard(UInt64($0)) }
        let runner = try makeRunner(shards)
        let r = try await runner.tick()
        await runner.shutdown()
        #expect(r.tick == 1)
        #expect(runner.coordinator.currentTick == 1)
        #expect(r.shards.map(\.shard) == [ShardID(1), ShardID(2), ShardID(3)])
        for s in r.shards {
            #expect(s.phases.map(\.phase) == [.sense, .act, .decay])
            #expect(s.phases.allSatisfy { $0.processed == 1 })
        }
        #expect(r.stamp > .zero)
        #expect(shards[0].events == ["sense 1", "act 1", "deliver 1 edges=0 messages=0", "decay 1"])
    }

    @Test("run(10) gives ticks 1 to 10")
    func runTen() async throws {
        let runner = try makeRunner([TestShard(1), TestShard(2)])
        let results = try await runner.run(10)
        await runner.shutdown()
        #expect(results.map(\.tick) == Array(1...10))
        #expect(runner.coordinator.currentTick == 10)
    }

    @Test("no shard starts a phase before every shard finished the previous one")
    func barrierOrder() async throws {
        let trace = Mutex<[(UInt64, Phase)]>([])
        let record: @Sendable (ShardContext) -> Void = { c in trace.withLock { $0.append((c.tick, c.phase)) } }
        let shards = (1...4).map { i in
            TestShard(UInt64(i), onSense: record, onAct: { c, _ in record(c) }, onDecay: record)
        }
        let runner = try makeRunner(shards)
        _ = try await runner.run(5)
        await runner.shutdown()
        let steps = trace.withLock { $0 }.map { ($0.0 - 1) * 3 + UInt64($0.1.rawValue) }
        #expect(steps.count == 5 * 3 * 4)
        #expect(steps == steps.sorted(), "phases interleaved across the barrier")
    }

    @Test("a shard that does not finish a phase times out the tick, named; the runner recovers")
    func missingShardTimesOut() async throws {
        let latch = TestLatch()
        let slow = TestShard(2, onSense: { _ in latch.wait(seconds: 30) })
        let runner = try makeRunner([TestShard(1), slow, TestShard(3)]) { $0.phaseTimeout = .seconds(1) }
        await #expect(throws: RunnerError.self) { try await runner.tick() }
        do {
            _ = try await runner.tick()
            Issue.record("a tick ran while shard-2 was still stuck")
        } catch {
            #expect(error == .shardsBusy(shards: [ShardID(2)], tick: 1))
        }
        latch.release()
        let r = try await runner.tick()
        #expect(r.tick == 1)
        await runner.shutdown()
    }

    @Test("the timeout error names the phase, the tick and the missing shard")
    func timeoutError() async throws {
        let latch = TestLatch()
        let slow = TestShard(5, onDecay: { c in if c.tick == 2 { latch.wait(seconds: 30) } })
        let runner = try makeRunner([TestShard(4), slow]) { $0.phaseTimeout = .seconds(1) }
        _ = try await runner.tick()
        do {
            _ = try await runner.tick()
            Issue.record("tick 2 did not time out")
        } catch {
            guard case let .phaseTimedOut(phase, tick, missing, waited, limit) = error else {
                Issue.record("unexpected error \(error)")
                latch.release()
                return
            }
            #expect(phase == .decay && tick == 2 && missing == [ShardID(5)])
            #expect(waited >= .seconds(1) && limit == .phase(.seconds(1)))
            #expect(error.description.contains("shard-5"))
        }
        latch.release()
        await runner.shutdown()
    }

    @Test("a shard throwing in Act fails the tick with its id; the runner stays usable")
    func actThrows() async throws {
        struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }
        let thrown = Atomic<Bool>(false)
        let bad = TestShard(3, onAct: { _, _ in
            if !thrown.exchange(true, ordering: .relaxed) { throw Boom() }
        })
        let runner = try makeRunner([TestShard(1), TestShard(2), bad])
        do {
            _ = try await runner.tick()
            Issue.record("the tick did not fail")
        } catch {
            #expect(error == .shardFailed(shard: ShardID(3), phase: .act, tick: 1, reason: "boom"))
        }
        #expect(runner.coordinator.currentTick == 0)
        let results = try await runner.run(2)
        #expect(results.map(\.tick) == [1, 2])
        await runner.shutdown()
    }

    @Test("edges and messages from Act arrive at their target before the next Sense")
    func edgeDelivery() async throws {
        let coordinator = Coordinator()
        try coordinator.register(ShardID(1))
        try coordinator.register(ShardID(2))
        let placement = coordinator.placement
        let mine = keys(ownedBy: ShardID(1), in: placement, count: 1)[0]
        let theirs = keys(ownedBy: ShardID(2), in: placement, count: 1)[0]
        let sender = TestShard(1, onAct: { c, out in
            guard c.tick == 1 else { return }
            out.emitEdge(from: mine, to: theirs, weight: 7)
            out.send([1, 2, 3], to: ShardID(2))
        })
        let receiver = TestShard(2)
        let runner = try DistributedRunner(coordinator: coordinator, shards: [sender, receiver])
        let results = try await runner.run(2)
        await runner.shutdown()
        let edge = CrossShardEdge(source: mine, target: theirs, sourceShard: ShardID(1), targetShard: ShardID(2), weight: 7)
        #expect(results[0].crossShardEdges == [edge])
        #expect(results[0].messageCount == 1)
        #expect(results[0].shard(ShardID(1))?.phase(.act)?.edgesEmitted == 1)
        let events = receiver.events
        let delivered = try #require(events.firstIndex(of: "deliver 1 edges=1 messages=1"))
        let nextSense = try #require(events.firstIndex(of: "sense 2"))
        #expect(delivered < nextSense)
        let d = receiver.log.withLock { $0.deliveries[0] }
        #expect(d.tick == 1 && d.delivery.edges == [edge])
        #expect(d.delivery.messages == [ShardMessage(from: ShardID(1), to: ShardID(2), payload: [1, 2, 3])])
        #expect(results[1].crossShardEdges.isEmpty)
    }

    @Test("a message for an unknown shard fails the tick naming the sender")
    func unknownTarget() async throws {
        let runner = try makeRunner([TestShard(1, onAct: { _, out in out.send([], to: ShardID(99)) }), TestShard(2)])
        await #expect(throws: RunnerError.unknownTarget(target: "shard-99", emittedBy: ShardID(1), tick: 1)) {
            try await runner.tick()
        }
        await runner.shutdown()
    }

    @Test("ghosts resolve through a per-shard LRU cache, invalidated when the owner leaves")
    func ghosts() async throws {
        let coordinator = Coordinator()
        for i in 1...3 as ClosedRange<UInt64> { try coordinator.register(ShardID(i)) }
        let placement = coordinator.placement
        let src = keys(ownedBy: ShardID(1), in: placement, count: 1)[0]
        let k = keys(ownedBy: ShardID(2), in: placement, count: 3)
        let other = keys(ownedBy: ShardID(3), in: placement, count: 1)[0]
        let seen = Mutex<[UInt64: GhostNode?]>([:])
        let emitter = TestShard(1,
            onSense: { c in if c.tick == 2 { seen.withLock { $0[2] = c.ghost(k[0]) } } },
            onAct: { c, out in
                switch c.tick {
                case 1: out.emitEdge(from: src, to: k[0]); out.emitEdge(from: src, to: k[1])
                case 2: out.emitEdge(from: src, to: k[0]); out.emitEdge(from: src, to: k[2])
                case 3: out.emitEdge(from: src, to: other)
                default: break
                }
            })
        let runner = try DistributedRunner(coordinator: coordinator, shards: [emitter, TestShard(2), TestShard(3)],
                                           configuration: RunnerConfiguration(ghostCacheCapacity: 2))
        let r1 = try await runner.tick()
        #expect(r1.ghostMisses == 2 && r1.ghostHits == 0)
        #expect(await runner.ghostCache(of: ShardID(1))?.keysByRecency == [k[0], k[1]])
        let r2 = try await runner.tick()
        #expect(r2.ghostHits == 1 && r2.ghostMisses == 1)
        let ghost = try #require(seen.withLock { $0[2] } ?? nil)
        #expect(ghost.owner == ShardID(2) && ghost.tick == 1 && ghost.payload == [UInt8(truncatingIfNeeded: k[0].rawValue)])
        // k[1] was the least recently used: k[2] took its place.
        #expect(await runner.ghostCache(of: ShardID(1))?.keysByRecency == [k[0], k[2]])
        _ = try await runner.tick()
        #expect(await runner.ghostCache(of: ShardID(1))?.count == 2)   // other evicted k[0]
        #expect(await runner.ghostCache(of: ShardID(1))?.peek(other) != nil)

        try await runner.removeShard(ShardID(2))
        let cache = try #require(await runner.ghostCache(of: ShardID(1)))
        #expect(cache.keysByRecency == [other])
        #expect(await runner.shardIDs == [ShardID(1), ShardID(3)])
        await #expect(throws: RunnerError.notRegistered(ShardID(2))) { try await runner.removeShard(ShardID(2)) }
        let r4 = try await runner.tick()
        #expect(r4.tick == 4 && r4.shards.map(\.shard) == [ShardID(1), ShardID(3)])
        await runner.shutdown()
    }

    @Test("with ghost resolution off, nothing is cached or looked up")
    func ghostsOff() async throws {
        let coordinator = Coordinator()
        try coordinator.register(ShardID(1))
        try coordinator.register(ShardID(2))
        let src = keys(ownedBy: ShardID(1), in: coordinator.placement, count: 1)[0]
        let dst = keys(ownedBy: ShardID(2), in: coordinator.placement, count: 1)[0]
        let sawGhost = Atomic<Bool>(false)
        let emitter = TestShard(1, onSense: { c in if c.ghost(dst) != nil { sawGhost.store(true, ordering: .relaxed) } },
                                onAct: { _, out in out.emitEdge(from: src, to: dst) })
        let runner = try DistributedRunner(coordinator: coordinator, shards: [emitter, TestShard(2)],
                                           configuration: RunnerConfiguration(ghostResolution: false))
        let results = try await runner.run(3)
        #expect(results.allSatisfy { $0.ghostHits == 0 && $0.ghostMisses == 0 && $0.crossShardEdges.count == 1 })
        #expect(await runner.ghostCache(of: ShardID(1))?.count == 0)
        let saw = sawGhost.load(ordering: .relaxed)
        #expect(!saw)
        await runner.shutdown()
    }

    @Test("parallelism: 4 threads run 4 shards at once; 1 thread runs one at a time")
    func parallelism() async throws {
        let inside = Atomic<Int>(0)
        let peak = Atomic<Int>(0)
        let arrived = Atomic<Int>(0)
        let rendezvous: @Sendable (ShardContext) throws -> Void = { _ in
            let n = inside.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
            var p = peak.load(ordering: .relaxed)
            while n > p, !peak.compareExchange(expected: p, desired: n, ordering: .relaxed).exchanged {
                p = peak.load(ordering: .relaxed)
            }
            arrived.add(1, ordering: .releasing)
            // All four must be inside at once; this only finishes when they run in parallel.
            let clock = SystemClock()
            let deadline = clock.now() + .seconds(10)
            while arrived.load(ordering: .acquiring) < 4, clock.now() < deadline { sched_yield_shim() }
            inside.subtract(1, ordering: .releasing)
        }
        let wide = try makeRunner((1...4).map { TestShard(UInt64($0), onSense: rendezvous) }) { $0.parallelism = 4 }
        _ = try await wide.tick()
        await wide.shutdown()
        let widest = peak.load(ordering: .relaxed)
        #expect(widest == 4)

        let concurrent = Atomic<Int>(0)
        let maxSeen = Atomic<Int>(0)
        let count: @Sendable (ShardContext) throws -> Void = { _ in
            let n = concurrent.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
            if n > maxSeen.load(ordering: .relaxed) { maxSeen.store(n, ordering: .relaxed) }
            sched_yield_shim()
            concurrent.subtract(1, ordering: .releasing)
        }
        let narrow = try makeRunner((1...4).map { TestShard(UInt64($0), onSense: count, onDecay: count) }) {
            $0.parallelism = 1
        }
        _ = try await narrow.run(3)
        await narrow.shutdown()
        let narrowest = maxSeen.load(ordering: .relaxed)
        #expect(narrowest == 1)
    }

    @Test("bad configurations and duplicate shards are refused; a shut-down runner says so")
    func refusals() async throws {
        #expect(throws: RunnerError.noShards) { try DistributedRunner(coordinator: Coordinator(), shards: []) }
        #expect(throws: RunnerError.duplicateShard(ShardID(1))) {
            try DistributedRunner(coordinator: Coordinator(), shards: [TestShard(1), TestShard(1)])
        }
        #expect(throws: RunnerError.self) {
            try DistributedRunner(coordinator: Coordinator(), shards: [TestShard(1)],
                                  configuration: RunnerConfiguration(parallelism: 0))
        }
        let runner = try makeRunner([TestShard(1)])
        await runner.shutdown()
        await runner.shutdown()
        await #expect(throws: RunnerError.shutDown) { try await runner.tick() }
    }
}
