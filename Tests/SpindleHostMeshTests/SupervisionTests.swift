import MetricsTestKit
import Testing
import SpindleEventLoop
import SpindleKernel
import SpindleTCP
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

/// Supervision: events, restart policy, live control links (liveness, reconnects), the stop
/// race, late replies.
@Suite("Supervision: events, restarts, liveness, reconnects")
struct SupervisionTests {
    @Test("a proc killed after ready yields a died event with signal 9; .never leaves it ended")
    func diedAfterReady() async throws {
        let spindle = try spindleBinary()
        try await withAgents(1) { _, transport, _, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: testMeshConfiguration())
            let procs = try await mesh.spawnProcs(name: "w", perHost: 2) { _ in BootstrapCommand(program: spindle, arguments: ["proc"]) }
            let events = procs.events()
            let meshEvents = mesh.events()
            let pid = try #require(procs.lastKnown[1].pid)
            #expect(kill(pid, SIGKILL) == 0)
            let death = try await firstEvent(events, "rank 1's died event") { e -> ProcDeath? in
                if case .died(let d) = e { return d } else { return nil }
            }
            #expect(death.rank == 1)
            #expect(death.status.state == .killed(signal: 9))
            #expect(death.status.pid == pid)
            #expect(death.wasReady)
            #expect(!death.restarting)
            let fromMesh = try await firstEvent(meshEvents, "the host mesh's died event") { e -> ProcDeath? in
                if case .died(let d) = e { return d } else { return nil }
            }
            #expect(fromMesh == death)
            try await waitUntil("rank 1 to stay killed") { procs.lastKnown[1].state == .killed(signal: 9) }
            #expect(procs.lastKnown[1].restarts == 0)
            #expect(procs.lastKnown[0].state == .ready)
            try await procs.stop()
            await mesh.shutdown()
        }
    }

    @Test("with .onFailure(maxRestarts: 2) a killed proc is restarted twice with its rank, then failed")
    func restartTwiceThenFailed() async throws {
        let spindle = try spindleBinary()
        try await withAgents(1) { _, transport, agents, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: testMeshConfiguration())
            let options = SpawnOptions(restart: .onFailure(maxRestarts: 2, backoff: .milliseconds(100)))
            let procs = try await mesh.spawnProcs(name: "r", perHost: 1, options: options) { _ in
                BootstrapCommand(program: spindle, arguments: ["proc"], environment: ["KEEP": "me"])
            }
            let events = procs.events()
            var pids: [Int32] = []
            for round in 0...2 {
                try await waitUntil("rank 0 ready after \(round) restarts", timeout: .seconds(30)) {
                    procs.lastKnown[0].state == .ready && procs.lastKnown[0].restarts == round
                }
                let pid = try #require(procs.lastKnown[0].pid)
                pids.append(pid)
                #expect(kill(pid, SIGKILL) == 0)
                let death = try await firstEvent(events, "death \(round)") { e -> ProcDeath? in
                    if case .died(let d) = e { return d } else { return nil }
                }
                #expect(death.status.state == .killed(signal: 9))
                #expect(death.status.restarts == round)
                #expect(death.restarting == (round < 2), "round \(round)")
            }
            #expect(Set(pids).count == 3, "each restart is a new process")
            try await waitUntil("rank 0 failed past its limit") {
                if case .failed(let why) = procs.lastKnown[0].state { return why.contains("limit 2") }
                return false
            }
            #expect(procs.lastKnown[0].restarts == 2)
            #expect(agents[0].statistics.procsRestarted == 2)
            try await procs.stop()
            await mesh.shutdown()
        }
    }

    @Test("a dropped control connection reconnects and an in-flight spawn completes exactly once")
    func droppedConnection() async throws {
        let t = InProcessTransport()
        let agent = try await FakeAgent(transport: t, address: .inproc(name: "drop"))
        var conf = testMeshConfiguration()
        conf.spawnIdleTimeout = .seconds(60)
        let mesh = try await HostMesh.attach(name: "m", hosts: [agent.address], config: ConfigSnapshot(), transport: t,
                                             configuration: conf)
        let channel = try #require(mesh.core.channel(0))
        let reconnectsBefore = try #require(channel.link).statistics.reconnects
        // The agent has the request; the connection goes before its answer does.
        agent.beforeSpawnReply { channel.cutConnection() }
        let procs = try await mesh.spawnProcs(name: "w", perHost: 2) { _ in BootstrapCommand(program: "/bin/true") }
        #expect(procs.lastKnown.map(\.state) == [.ready, .ready])
        #expect(agent.spawnRequests.count == 1, "the request was delivered exactly once")
        #expect(try #require(channel.link).statistics.reconnects > reconnectsBefore)
        try await procs.stop()
        await mesh.shutdown()
        await agent.close()
        await t.shutdown()
    }

    @Test("an agent that stops answering (SIGSTOP) is lost within the bound: pending calls fail naming it; it comes back")
    func hostLostAndBack() async throws {
        try await withAgentDaemon("host-lost-test", extra: ["--allow", "sleep"]) { daemon, transport, spindle in
            let address = try await readListeningAddress(daemon)
            var conf = testMeshConfiguration()
            conf.livenessBound = .seconds(5)   // under test: the production bound
            let mesh = try await HostMesh.attach(name: "m", hosts: [address], config: ConfigSnapshot(["v": "1"]),
                                                 timeout: .seconds(20), transport: transport, configuration: conf)
            let procs = try await mesh.spawnProcs(name: "w", perHost: 1, options: SpawnOptions(readiness: .started)) { _ in
                BootstrapCommand(program: "sleep", arguments: ["600"])
            }
            let events = mesh.events()
            let clock = ContinuousClock()
            let stopped = clock.now
            try daemon.kill(SIGSTOP)
            // A call made while the agent is silent fails once it is declared lost, not at its timeout.
            do throws(HostMeshError) {
                try await mesh.pushConfig(ConfigSnapshot(["v": "2"]), timeout: .seconds(60))
                Issue.record("a push to a stopped agent succeeded")
            } catch {
                guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); throw error }
                #expect(e.failedHosts == [address])
                guard case .connectionLost(let why) = e.failures[0].cause else { Issue.record("cause \(e.failures[0].cause)"); throw error }
                #expect(why.contains("lost"))
                #expect(e.description.contains(address.description))
            }
            let lost = try await firstEvent(events, "hostLost") { e -> Address? in
                if case .hostLost(let h, _, _) = e { return h } else { return nil }
            }
            let elapsed = clock.now - stopped
            #expect(lost == address)
            // Ticks, heartbeats and a loaded machine add a little to the bound.
            #expect(elapsed < conf.livenessBound + .seconds(5), "lost after \(elapsed)")
            #expect(!mesh.isHostUp(0))
            guard case .hostLost = procs.lastKnown[0].state else { Issue.record("rank 0 is \(procs.lastKnown[0].state)"); throw TestFailure("") }
            #expect(mesh.statistics.hostsLost == 1)

            try daemon.kill(SIGCONT)
            let back = try await firstEvent(events, "hostBack", timeout: .seconds(60)) { e -> Address? in
                if case .hostBack(let h, _) = e { return h } else { return nil }
            }
            #expect(back == address)
            #expect(mesh.isHostUp(0))
            #expect(mesh.statistics.hostsBack == 1)
            // The config came back with the host, and it takes new ones again.
            try await mesh.pushConfig(ConfigSnapshot(["v": "3"]), timeout: .seconds(30))
            await mesh.shutdown()
            try daemon.kill(SIGTERM)
            #expect(await daemon.wait() == .exited(code: 0))
        }
    }

    @Test("the stop race: a proc that ends just as stop() begins is reported stopped at once")
    func stopRace() async throws {
        let t = InProcessTransport()
        let agent = try await FakeAgent(transport: t, address: .inproc(name: "race"), stop: .answerOnly)
        var conf = testMeshConfiguration()
        conf.stopIdleTimeout = .seconds(120)
        let mesh = try await HostMesh.attach(name: "m", hosts: [agent.address], config: ConfigSnapshot(), transport: t,
                                             configuration: conf)
        let clock = ContinuousClock()
        for round in 0..<20 {
            let name = "r\(round)"
            let procs = try await mesh.spawnProcs(name: name, perHost: 1) { _ in BootstrapCommand(program: "/bin/true") }
            let ended = ProcStatus(mesh: name, rank: 0, state: .stopped(exitCode: 0, stderrTail: []), pid: 1000)
            let push = Task { agent.push(ended) }
            let start = clock.now
            try await procs.stop()
            let took = clock.now - start
            await push.value
            #expect(took < .seconds(20), "round \(round): stop took \(took)")
            #expect(procs.lastKnown[0].state == .stopped(exitCode: 0, stderrTail: []))
        }
        await mesh.shutdown()
        await agent.close()
        await t.shutdown()
    }

    @Test("HM-3: a config-push reply after its attach failed is dropped and counted; the config is removed")
    func lateReplyDropped() async throws {
        let t = InProcessTransport()
        let slow = try await FakeAgent(transport: t, address: .inproc(name: "slow"), config: .answerLate)
        let fine = try await FakeAgent(transport: t, address: .inproc(name: "fine"))
        let metrics = TestMetrics()
        var conf = testMeshConfiguration()
        conf.metricsFactory = metrics
        do throws(HostMeshError) {
            _ = try await HostMesh.attach(name: "late", hosts: [fine.address, slow.address], config: ConfigSnapshot(["k": "v"]),
                                          timeout: .seconds(20), transport: t, configuration: conf)
            Issue.record("attach succeeded")
        } catch {
            guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); return }
            #expect(e.failedHosts == [slow.address])
            #expect(e.failures[0].cause == .timedOut(after: .seconds(20)))
        }
        // The slow agent answered (late: when told the session is over): that answer was dropped.
        let late = try metrics.expectCounter("spindle_mesh_late_replies_total", [("role", "client"), ("mesh", "late")])
        #expect(late.totalValue == 1)
        // HM-2: neither host keeps the config of the failed attach.
        #expect(fine.sessionsEnded == 1)
        #expect(fine.installedConfig == nil)
        #expect(slow.sessionsEnded == 1)
        #expect(slow.installedConfig == nil)
        await slow.close()
        await fine.close()
        await t.shutdown()
    }

    @Test("a slow subscriber keeps a bounded buffer and is told how many events it missed")
    func boundedSubscribers() async throws {
        let hub = Broadcast<MeshEvent>()
        let slow = BufferedSequence(hub, capacity: 3) { item -> MeshEvent in
            switch item {
            case .element(let e): return e
            case .missed(let n): return .missed(n)
            }
        }
        let fast = BufferedSequence(hub, capacity: 100) { item -> MeshEvent in
            switch item {
            case .element(let e): return e
            case .missed(let n): return .missed(n)
            }
        }
        for i in 0..<10 { hub.publish(.hostBack(host: .inproc(name: "h\(i)"), hostRank: i)) }
        hub.finish()
        var got: [MeshEvent] = []
        for await e in slow { got.append(e) }
        #expect(got.count == 4)
        #expect(got.last == .missed(7))
        #expect(got.prefix(3).map { if case .hostBack(_, let r) = $0 { r } else { -1 } } == [0, 1, 2])
        var all = 0
        for await _ in fast { all += 1 }
        #expect(all == 10)
    }
}
