import Testing
import SpindleKernel
@testable import SpindleHostMesh

/// Client-side behaviour against scripted agents over the in-process transport.
@Suite("Host mesh client (in-process, scripted agents)")
struct ClientTests {
    static func fastConfiguration() -> HostMesh.Configuration {
        var c = HostMesh.Configuration()
        // Long enough for a loaded machine running the whole suite (the cooperative pool
        // delivers in-process envelopes, and it can be busy for many seconds).
        c.spawnIdleTimeout = .seconds(30)
        c.stopIdleTimeout = .seconds(30)
        c.stateIdleTimeout = .seconds(30)
        c.livenessBound = .seconds(60)   // liveness is not under test here
        return c
    }

    @Test("attach installs the snapshot on every host (HM-1); zero hosts succeed")
    func attachInstalls() async throws {
        let t = InProcessTransport()
        let a = try await FakeAgent(transport: t, address: .inproc(name: "a"))
        let b = try await FakeAgent(transport: t, address: .inproc(name: "b"))
        let config = ConfigSnapshot(["model": "colony", "seed": "7"])
        let mesh = try await HostMesh.attach(name: "m", hosts: [a.address, b.address], config: config,
                                             timeout: .seconds(30), transport: t, configuration: Self.fastConfiguration())
        #expect(a.installedConfig == config)
        #expect(b.installedConfig == config)
        #expect(mesh.ref.description == "m@inproc://a,inproc://b")
        let empty = try await HostMesh.attach(name: "none", hosts: [], config: config, timeout: .seconds(1), transport: t,
                                              configuration: Self.fastConfiguration())
        #expect(empty.hosts.isEmpty)
        await mesh.shutdown()
        await empty.shutdown()
        await a.close(); await b.close()
        await t.shutdown()
    }

    @Test("HM-2/HM-4: failures name exactly the failing hosts with their causes")
    func attachFailures() async throws {
        let t = InProcessTransport()
        let good = try await FakeAgent(transport: t, address: .inproc(name: "good"))
        let rejecting = try await FakeAgent(transport: t, address: .inproc(name: "rejecting"), config: .reject("key x unknown"))
        let silent = try await FakeAgent(transport: t, address: .inproc(name: "silent"), config: .ignore)
        let wrong = try await FakeAgent(transport: t, address: .inproc(name: "wrong"), config: .acknowledgeWrongDigest)
        let nobody = Address.inproc(name: "nobody")
        do {
            _ = try await HostMesh.attach(name: "m", hosts: [good.address, rejecting.address, nobody, silent.address, wrong.address],
                                          config: ConfigSnapshot(["a": "1"]), timeout: .seconds(20), transport: t,
                                          configuration: Self.fastConfiguration())
            Issue.record("attach succeeded with failing hosts")
        } catch {
            guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); return }
            #expect(e.failedHosts == [rejecting.address, nobody, silent.address, wrong.address])
            #expect(e.failures.map(\.rank) == [1, 2, 3, 4])
            #expect(e.failures[0].cause == .rejectedConfig("key x unknown"))
            guard case .unreachable = e.failures[1].cause else { Issue.record("expected unreachable: \(e.failures[1])"); return }
            #expect(e.failures[2].cause == .timedOut(after: .seconds(20)))
            guard case .digestMismatch = e.failures[3].cause else { Issue.record("expected digest mismatch"); return }
            #expect(!e.description.contains("inproc://good"))
        }
        for a in [good, rejecting, silent, wrong] { await a.close() }
        await t.shutdown()
    }

    @Test("bad mesh names and duplicate hosts are typed errors")
    func invalidMesh() async {
        let t = InProcessTransport()
        await #expect(throws: HostMeshError.self) {
            _ = try await HostMesh.attach(name: "a b", hosts: [], config: ConfigSnapshot(), transport: t,
                                          configuration: Self.fastConfiguration())
        }
        await #expect(throws: HostMeshError.self) {
            _ = try await HostMesh.attach(name: "m", hosts: [.inproc(name: "x"), .inproc(name: "x")],
                                          config: ConfigSnapshot(), transport: t, configuration: Self.fastConfiguration())
        }
        await t.shutdown()
    }

    @Test("spawn: ranks are hostRank × perHost + i, and the bootstrap sees each rank")
    func rankLayout() async throws {
        let t = InProcessTransport()
        let a = try await FakeAgent(transport: t, address: .inproc(name: "ra"))
        let b = try await FakeAgent(transport: t, address: .inproc(name: "rb"))
        let mesh = try await HostMesh.attach(name: "m", hosts: [a.address, b.address], config: ConfigSnapshot(),
                                             transport: t, configuration: Self.fastConfiguration())
        let procs = try await mesh.spawnProcs(name: "w", perHost: 3) { rank in
            BootstrapCommand(program: "/bin/true", arguments: ["\(rank)"])
        }
        #expect(a.spawnRequests.first?.procs.map(\.rank) == [0, 1, 2])
        #expect(b.spawnRequests.first?.procs.map(\.rank) == [3, 4, 5])
        #expect(b.spawnRequests.first?.procs.map(\.command.arguments) == [["3"], ["4"], ["5"]])
        #expect(b.spawnRequests.first?.hostRank == 1)
        #expect(b.spawnRequests.first?.worldSize == 6)
        #expect(procs.host(ofRank: 4) == b.address)
        #expect(procs.lastKnown.map(\.state) == Array(repeating: .ready, count: 6))
        #expect(await procs.states() == Array(repeating: .ready, count: 6))
        try await procs.stop()
        #expect(a.stopRequests == ["w"])
        #expect(procs.lastKnown.allSatisfy { $0.state == .stopped(exitCode: 0, stderrTail: []) })
        await mesh.shutdown()
        await a.close(); await b.close()
        await t.shutdown()
    }

    @Test("spawn: the bootstrap's error fails the spawn with that rank and starts nothing")
    func bootstrapError() async throws {
        struct NoConfig: Error {}
        let t = InProcessTransport()
        let a = try await FakeAgent(transport: t, address: .inproc(name: "ba"))
        let mesh = try await HostMesh.attach(name: "m", hosts: [a.address], config: ConfigSnapshot(), transport: t,
                                             configuration: Self.fastConfiguration())
        await #expect(throws: ProcMeshError.bootstrapFailed(mesh: "w", rank: 1, "NoConfig()")) {
            _ = try await mesh.spawnProcs(name: "w", perHost: 2) { rank in
                if rank == 1 { throw NoConfig() }
                return BootstrapCommand(program: "/bin/true")
            }
        }
        #expect(a.spawnRequests.isEmpty)
        await mesh.shutdown()
        await a.close()
        await t.shutdown()
    }

    @Test("spawn: one host whose procs hang gives [timeout, ready] after the idle timeout")
    func hangingHost() async throws {
        let t = InProcessTransport()
        let hanging = try await FakeAgent(transport: t, address: .inproc(name: "hang"), spawn: .silent)
        let fine = try await FakeAgent(transport: t, address: .inproc(name: "fine"))
        var conf = Self.fastConfiguration()
        conf.spawnIdleTimeout = .seconds(15)   // waited out: the hanging host never answers
        conf.stopIdleTimeout = .seconds(3)     // the failed spawn's stop of the hanging host gives up
        let mesh = try await HostMesh.attach(name: "m", hosts: [hanging.address, fine.address], config: ConfigSnapshot(),
                                             transport: t, configuration: conf)
        do {
            _ = try await mesh.spawnProcs(name: "w", perHost: 1) { _ in BootstrapCommand(program: "/bin/true") }
            Issue.record("spawn succeeded")
        } catch {
            guard case .spawnTimedOut(_, let idle, let states) = error else { Issue.record("wrong error \(error)"); return }
            #expect(idle == .seconds(15))
            #expect(states == [.timeout, .ready])
        }
        #expect(hanging.stopRequests == ["w"], "a failed spawn stops what it started")
        await mesh.shutdown()
        await hanging.close(); await fine.close()
        await t.shutdown()
    }

    @Test("spawn: a proc exiting before ready fails the spawn with its exit status")
    func exitBeforeReady() async throws {
        let t = InProcessTransport()
        let a = try await FakeAgent(transport: t, address: .inproc(name: "ea"), spawn: .exitBeforeReady(1))
        let mesh = try await HostMesh.attach(name: "m", hosts: [a.address], config: ConfigSnapshot(),
                                             transport: t, configuration: Self.fastConfiguration())
        await #expect(throws: ProcMeshError.procFailed(mesh: "w", rank: 0,
                                                       states: [.stopped(exitCode: 1, stderrTail: ["bye"])])) {
            _ = try await mesh.spawnProcs(name: "w", perHost: 1) { _ in BootstrapCommand(program: "false") }
        }
        await mesh.shutdown()
        await a.close()
        await t.shutdown()
    }

    @Test("slices spawn on their hosts only, with ranks from 0")
    func slices() async throws {
        let t = InProcessTransport()
        let agents = [try await FakeAgent(transport: t, address: .inproc(name: "s0")),
                      try await FakeAgent(transport: t, address: .inproc(name: "s1")),
                      try await FakeAgent(transport: t, address: .inproc(name: "s2"))]
        let mesh = try await HostMesh.attach(name: "m", hosts: agents.map(\.address), config: ConfigSnapshot(), transport: t,
                                             configuration: Self.fastConfiguration())
        let tail = try mesh.slice(1..<3)
        #expect(tail.ref.description == "m@inproc://s1,inproc://s2")
        let procs = try await tail.spawnProcs(name: "w", perHost: 1) { _ in BootstrapCommand(program: "/bin/true") }
        #expect(agents[0].spawnRequests.isEmpty)
        #expect(agents[1].spawnRequests.first?.procs.map(\.rank) == [0])
        #expect(agents[2].spawnRequests.first?.procs.map(\.rank) == [1])
        #expect(procs.count == 2)
        await tail.shutdown()
        #expect(agents[2].stopRequests == ["w"])
        #expect(throws: HostMeshRefError.self) { _ = try mesh.slice(2..<5) }
        await mesh.shutdown()
        for a in agents { await a.close() }
        await t.shutdown()
    }

    @Test("the admin view de-duplicates hosts in first-seen order")
    func admin() async throws {
        let m1 = try HostMeshRef(parsing: "a@inproc://h1,inproc://h2")
        let m2 = try HostMeshRef(parsing: "b@inproc://h3,inproc://h1")
        let admin = MeshAdmin(meshes: [m1, m2])
        #expect(admin.hosts == [.inproc(name: "h1"), .inproc(name: "h2"), .inproc(name: "h3")])
        let t = InProcessTransport()
        let reports = await admin.status(transport: t, timeout: .milliseconds(300))
        #expect(reports.map(\.meshes) == [["a", "b"], ["a"], ["b"]])
        #expect(reports.allSatisfy { if case .failure = $0.result { true } else { false } })
        let table = MeshAdmin.table(reports)
        #expect(table.split(separator: "\n").count == 4)
        #expect(table.contains("unreachable"))
        await t.shutdown()
    }

    @Test("the shutdown guard stops the procs and closes the mesh when released")
    func shutdownGuard() async throws {
        let t = InProcessTransport()
        let a = try await FakeAgent(transport: t, address: .inproc(name: "ga"))
        var guardian: HostMeshShutdownGuard? = HostMeshShutdownGuard(
            try await HostMesh.attach(name: "m", hosts: [a.address], config: ConfigSnapshot(), transport: t,
                                      configuration: Self.fastConfiguration()))
        _ = try await guardian!.mesh.spawnProcs(name: "w", perHost: 1) { _ in BootstrapCommand(program: "/bin/true") }
        #expect(a.stopRequests.isEmpty)
        guardian = nil
        try await waitUntil("the guard's shutdown to stop the procs") { a.stopRequests == ["w"] }
        await a.close()
        await t.shutdown()
    }

    @Test("pushConfig replaces the snapshot on every host and names a host that rejects it")
    func pushConfig() async throws {
        let t = InProcessTransport()
        let a = try await FakeAgent(transport: t, address: .inproc(name: "pa"))
        let b = try await FakeAgent(transport: t, address: .inproc(name: "pb"))
        let mesh = try await HostMesh.attach(name: "m", hosts: [a.address, b.address], config: ConfigSnapshot(["v": "1"]),
                                             transport: t, configuration: Self.fastConfiguration())
        try await mesh.pushConfig(ConfigSnapshot(["v": "2"]))
        try await mesh.pushConfig(ConfigSnapshot(["v": "2"]))
        #expect(a.installedConfig == ConfigSnapshot(["v": "2"]))
        #expect(b.installedConfig == ConfigSnapshot(["v": "2"]))
        await b.close()
        try await waitUntil("the client to see host b go") { !mesh.isHostUp(1) }
        do throws(HostMeshError) {
            try await mesh.pushConfig(ConfigSnapshot(["v": "3"]), timeout: .seconds(2))
            Issue.record("push to a closed host succeeded")
        } catch {
            guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); return }
            #expect(e.failedHosts == [b.address])
        }
        await mesh.shutdown()
        await a.close()
        await t.shutdown()
    }

    @Test("a proc mesh keeps its host mesh's channels: attach(…).spawnProcs(…) keeps its procs")
    func procMeshKeepsItsMesh() async throws {
        let t = InProcessTransport()
        let a = try await FakeAgent(transport: t, address: .inproc(name: "keep"))
        let procs = try await HostMesh.attach(name: "m", hosts: [a.address], config: ConfigSnapshot(), timeout: .seconds(30),
                                              transport: t, configuration: Self.fastConfiguration())
            .spawnProcs(name: "w", perHost: 1) { _ in BootstrapCommand(program: "/bin/true") }
        // The temporary HostMesh is gone; the proc mesh still reaches its agent.
        #expect(await procs.states() == [.ready])
        #expect(a.stopRequests.isEmpty)
        #expect(a.sessionsEnded == 0)
        try await procs.stop()
        #expect(a.stopRequests == ["w"])
        await a.close()
        await t.shutdown()
    }

    @Test("a slice's shutdown stops only what was spawned through it")
    func sliceShutdownScope() async throws {
        let t = InProcessTransport()
        let agents = [try await FakeAgent(transport: t, address: .inproc(name: "sc0")),
                      try await FakeAgent(transport: t, address: .inproc(name: "sc1"))]
        let mesh = try await HostMesh.attach(name: "m", hosts: agents.map(\.address), config: ConfigSnapshot(),
                                             timeout: .seconds(30), transport: t, configuration: Self.fastConfiguration())
        let parents = try await mesh.spawnProcs(name: "parent", perHost: 1) { _ in BootstrapCommand(program: "/bin/true") }
        let slice = try mesh.slice(0..<2)
        _ = try await slice.spawnProcs(name: "child", perHost: 1) { _ in BootstrapCommand(program: "/bin/true") }
        await slice.shutdown()
        #expect(agents.map(\.stopRequests) == [["child"], ["child"]], "the parent's proc mesh overlaps the slice and keeps running")
        #expect(parents.lastKnown.map(\.state) == [.ready, .ready])
        await mesh.shutdown()
        #expect(agents.map(\.stopRequests) == [["child", "parent"], ["child", "parent"]])
        #expect(agents.map(\.sessionsEnded) == [1, 1])
        for a in agents { await a.close() }
        await t.shutdown()
    }
}
