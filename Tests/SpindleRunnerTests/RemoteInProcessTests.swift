import SpindleKernel
import Synchronization
import Testing
@testable import SpindleRunner

/// Starts `count` colony shard servers on `transport`, each connected to a fresh listener.
func withRemoteColony<T>(shards count: Int, configuration: ColonyConfiguration, transport: any Transport,
                         address: Address,
                         _ body: (Coordinator, [RemoteShard]) async throws -> T) async throws -> T {
    let coordinator = Coordinator()
    let listener = try await ShardServerListener.listen(on: address, transport: transport, hlc: coordinator.hlc)
    let ids = (1...count).map { ShardID(UInt64($0)) }
    let placement = ShardPlacement(shards: ids, virtualNodes: coordinator.configuration.virtualNodes)
    var hosts: [ShardHost] = []
    do {
        for id in ids {
            let shard = ColonyShard(id: id, configuration: configuration, placement: placement)
            hosts.append(try await ShardHost.serve(shard, coordinator: listener.address, transport: transport))
        }
        let remotes = try await listener.waitForShards(count: count, timeout: .seconds(20))
        let result = try await body(coordinator, remotes)
        listener.shutdown()
        for h in hosts { await h.shutdown() }
        return result
    } catch {
        listener.shutdown()
        for h in hosts { await h.shutdown() }
        throw error
    }
}

@Suite("Remote shards over the in-process transport")
struct RemoteInProcessTests {
    let configuration = ColonyConfiguration(seed: 0xC0FFEE, nodeCount: 200, agentCount: 50)

    @Test("a shard server naming a shard the runner did not announce is refused, naming it")
    func unannouncedShardIsRefused() async throws {
        let transport = InProcessTransport()
        let coordinator = Coordinator()
        let listener = try await ShardServerListener.listen(on: .inproc(name: "coord-announced"), transport: transport,
                                                            hlc: coordinator.hlc, expecting: [ShardID(1)])
        let placement = ShardPlacement(shards: [ShardID(1), ShardID(2)], virtualNodes: 16)
        let good = try await ShardHost.serve(ColonyShard(id: ShardID(1), configuration: configuration, placement: placement),
                                             coordinator: listener.address, transport: transport)
        let stranger = try await ShardHost.serve(ColonyShard(id: ShardID(2), configuration: configuration, placement: placement),
                                                 coordinator: listener.address, transport: transport)
        let remotes = try await listener.waitForShards(count: 1, timeout: .seconds(20))
        #expect(remotes.map(\.id) == [ShardID(1)])
        do {
            _ = try await listener.waitForShards(count: 2, timeout: .milliseconds(300))
            Issue.record("the unannounced shard was accepted")
        } catch {
            #expect("\(error)".contains("shard-2 is not one of the shards announced"), "\(error)")
        }
        listener.shutdown()
        await good.shutdown()
        await stranger.shutdown()
        await transport.shutdown()
    }

    @Test("a wait that times out leaves a concurrent wait waiting; it returns when its server says hello")
    func timedOutWaitLeavesOthersWaiting() async throws {
        let transport = InProcessTransport()
        let coordinator = Coordinator()
        let listener = try await ShardServerListener.listen(on: .inproc(name: "coord-waits"), transport: transport,
                                                            hlc: coordinator.hlc)
        let long = Task { try await listener.waitForShards(count: 1, timeout: .seconds(30)) }
        do {
            _ = try await listener.waitForShards(count: 1, timeout: .milliseconds(50))
            Issue.record("a wait with no shard server returned")
        } catch {
            #expect("\(error)".contains("0 of 1 shard servers said hello within"), "\(error)")
        }
        do {
            _ = try await listener.waitForShard(ShardID(1), timeout: .milliseconds(50))
            Issue.record("a wait with no shard server returned")
        } catch {
            #expect("\(error)".contains("no shard server for shard-1 said hello within"), "\(error)")
        }
        let placement = ShardPlacement(shards: [ShardID(1)], virtualNodes: 16)
        let host = try await ShardHost.serve(ColonyShard(id: ShardID(1), configuration: configuration, placement: placement),
                                             coordinator: listener.address, transport: transport)
        let remotes = try await long.value
        #expect(remotes.map(\.id) == [ShardID(1)])
        listener.shutdown()
        await host.shutdown()
        await transport.shutdown()
    }

    @Test("remote shard servers give the same colony state as in-process shards")
    func remoteInvariance() async throws {
        let local = try await runColony(shards: 1, ticks: 25, configuration: configuration)
        for n in [2, 4] {
            let transport = InProcessTransport()
            let digest = try await withRemoteColony(shards: n, configuration: configuration, transport: transport,
                                                    address: .inproc(name: "coord-\(n)")) { coordinator, remotes in
                let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) })
                let results = try await runner.run(25)
                #expect(results.map(\.tick) == Array(1...25))
                #expect(results.contains { !$0.crossShardEdges.isEmpty })
                // Barrier arrivals carry hybrid logical clock stamps that order with the tick's.
                for r in results {
                    for s in r.shards { for p in s.phases { #expect(p.stamp < r.stamp) } }
                }
                let d = try await runner.stateDigest()
                await runner.shutdown()
                return d
            }
            await transport.shutdown()
            #expect(digest == local.digest, "\(n) remote shards diverged")
        }
    }

    @Test("in-process and remote shards mix in one runner with the same result")
    func mixed() async throws {
        let local = try await runColony(shards: 1, ticks: 15, configuration: configuration)
        let transport = InProcessTransport()
        let digest = try await withRemoteColony(shards: 2, configuration: configuration, transport: transport,
                                                address: .inproc(name: "coord-mixed")) { coordinator, remotes in
            // Shard 1 is served remotely, shard 2 runs in this process.
            let localTwo = ColonyShard(id: ShardID(2), configuration: configuration,
                                       placement: ShardPlacement(shards: [ShardID(1), ShardID(2)]))
            let runner = try DistributedRunner(coordinator: coordinator,
                                               members: [.remote(remotes[0]), .local(localTwo)])
            _ = try await runner.run(15)
            let d = try await runner.stateDigest()
            await runner.shutdown()
            return d
        }
        await transport.shutdown()
        #expect(digest == local.digest)
    }

    @Test("a remote shard that fails in Act fails the tick naming it; a lost connection names the shard")
    func remoteFailures() async throws {
        let transport = InProcessTransport()
        let coordinator = Coordinator()
        let listener = try await ShardServerListener.listen(on: .inproc(name: "coord-fail"), transport: transport,
                                                           hlc: coordinator.hlc)
        struct Refuse: Error, CustomStringConvertible { var description: String { "refused" } }
        let refused = Atomic<Bool>(false)
        let failing = TestShard(7, onAct: { c, _ in
            if c.tick == 2, !refused.exchange(true, ordering: .relaxed) { throw Refuse() }
        })
        let host = try await ShardHost.serve(failing, coordinator: listener.address, transport: transport)
        let remotes = try await listener.waitForShards(count: 1, timeout: .seconds(20))
        #expect(remotes.map(\.id) == [ShardID(7)])
        let runner = try DistributedRunner(coordinator: coordinator, members: [.remote(remotes[0]), .local(TestShard(8))],
                                           configuration: RunnerConfiguration(phaseTimeout: .seconds(20)))
        #expect(try await runner.tick().tick == 1)
        await #expect(throws: RunnerError.shardFailed(shard: ShardID(7), phase: .act, tick: 2, reason: "refused")) {
            try await runner.tick()
        }
        #expect(try await runner.tick().tick == 2)
        await host.shutdown()
        do {
            _ = try await runner.tick()
            Issue.record("a tick succeeded without shard-7's server")
        } catch {
            #expect(error.description.contains("shard-7"), "\(error)")
        }
        await runner.shutdown()
        listener.shutdown()
        await transport.shutdown()
    }

    @Test("a remote shard that does not finish a phase times out the tick naming it; its late reply is ignored")
    func remoteTimeout() async throws {
        let transport = InProcessTransport()
        let coordinator = Coordinator()
        let listener = try await ShardServerListener.listen(on: .inproc(name: "coord-slow"), transport: transport,
                                                           hlc: coordinator.hlc)
        let latch = TestLatch()
        let slow = TestShard(4, onAct: { c, _ in if c.tick == 1 { latch.wait(seconds: 30) } })
        let host = try await ShardHost.serve(slow, coordinator: listener.address, transport: transport)
        let remotes = try await listener.waitForShards(count: 1, timeout: .seconds(20))
        let runner = try DistributedRunner(coordinator: coordinator, members: [.remote(remotes[0]), .local(TestShard(5))],
                                           // Long enough that Sense never times out on a loaded machine;
                                           // the blocked Act still does.
                                           configuration: RunnerConfiguration(phaseTimeout: .seconds(3)))
        do {
            _ = try await runner.tick()
            Issue.record("the tick did not time out")
        } catch {
            guard case let .phaseTimedOut(phase, tick, missing, _, _) = error else {
                Issue.record("unexpected \(error)")
                latch.release()
                return
            }
            #expect(phase == .act && tick == 1 && missing == [ShardID(4)])
        }
        latch.release()
        // The server finishes the abandoned act late; the retried tick 1 is not confused by it.
        let r = try await runner.tick()
        #expect(r.tick == 1 && r.shards.map(\.shard) == [ShardID(4), ShardID(5)])
        await runner.shutdown()
        await host.shutdown()
        listener.shutdown()
        await transport.shutdown()
    }

    @Test("a shard server that never connects: waiting for shards times out saying how many came")
    func missingServer() async throws {
        let transport = InProcessTransport()
        let listener = try await ShardServerListener.listen(on: .inproc(name: "coord-empty"), transport: transport,
                                                           hlc: HybridLogicalClock(clock: SystemClock()))
        do {
            _ = try await listener.waitForShards(count: 2, timeout: .milliseconds(200))
            Issue.record("no timeout")
        } catch {
            #expect(error.description.contains("0 of 2"))
        }
        listener.shutdown()
        await transport.shutdown()
    }
}
