import ActorFixtureActors
import NetworkTestSupport
import Distributed
import SpindleActors
import SpindleEventLoop
import SpindleHostMesh
import SpindleKernel
import SpindleTCP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Two in-process host agents on TCP loopback, a client actor system they know as the host
/// mesh's client, and `perHost` procs on each running the ActorPeerFixture executable (an
/// actor host). Everything is stopped and shut down afterwards.
func withProcMesh<T>(agents agentCount: Int = 2, perHost: Int = 2,
                     _ body: (ProcMesh, SpindleActorSystem) async throws -> T) async throws -> T {
    let executable = try builtExecutable("ActorPeerFixture")
    let loop = try EventLoop(name: "actor-mesh-test")
    let transport = TCPTransport(loop: loop)
    var agents: [HostAgent] = []
    var hostMesh: HostMesh? = nil
    var system: SpindleActorSystem? = nil
    func tearDown() async {
        await hostMesh?.shutdown()
        for a in agents { await a.shutdown() }
        await system?.shutdown()
        await transport.shutdown()
        await loop.shutdown()
    }
    do {
        var addresses: [Address] = []
        for _ in 0..<agentCount {
            var c = HostAgent.Configuration()
            c.listenAddress = .tcp(host: "127.0.0.1", port: 0)
            c.allowedPrograms = [executable]
            c.stopGrace = .seconds(2)
            c.forwardProcStdout = false
            c.logger.logLevel = .warning
            let agent = HostAgent(on: loop, transport: transport, configuration: c)
            agents.append(agent)
            addresses.append(try await agent.start())
        }
        var systemConfig = SpindleActorSystem.Configuration(listenAddress: .tcp(host: "127.0.0.1", port: 0))
        systemConfig.logger.logLevel = .critical
        let s = try await SpindleActorSystem(transport: transport, configuration: systemConfig)
        system = s
        var meshConfig = HostMesh.Configuration()
        meshConfig.clientAddress = s.address
        meshConfig.logger.logLevel = .warning
        let m = try await HostMesh.attach(name: "actors", hosts: addresses, config: ConfigSnapshot(["role": "test"]),
                                          timeout: .seconds(30), transport: transport, configuration: meshConfig)
        hostMesh = m
        let procs = try await m.spawnProcs(name: "workers", perHost: perHost) { _ in BootstrapCommand(program: executable) }
        let r = try await body(procs, s)
        try? await procs.stop()
        await tearDown()
        return r
    } catch {
        await tearDown()
        throw error
    }
}

/// A mesh actor no fixture proc registers.
distributed actor Unregistered: MeshActor {
    typealias ActorSystem = SpindleActorSystem
    static func spawn(argument: Int, context: MeshActorContext) async throws -> Unregistered {
        Unregistered(actorSystem: context.actorSystem)
    }
}

@Suite("Actor meshes on proc meshes")
struct ActorMeshTests {
    @Test("an actor mesh of 4 procs on 2 agents: call answers in rank order; slice, cast, subscript")
    func callInRankOrder() async throws {
        try await withProcMesh { procs, system in
            #expect(procs.count == 4)
            let counters = try await procs.spawnActors(MeshCounter.self, name: "counters", on: system) { rank in rank * 100 }
            #expect(counters.count == 4)
            #expect(counters.ranks == [0, 1, 2, 3])
            let totals = await counters.call { try await $0.add(1) }
            #expect(try totals.map { try $0.get() } == [1, 101, 201, 301])
            let ranks = await counters.call { try await $0.rank() }
            #expect(try ranks.map { try $0.get() } == [0, 1, 2, 3])
            let pids = try await counters.call { try await $0.processID() }.map { try $0.get() }
            #expect(Set(pids).count == 4)
            #expect(Set(pids) == Set(procs.lastKnown.compactMap(\.pid)))
            // One-way casts are sent before a later call from this node: FIFO per pair.
            await counters.cast { _ = try await $0.add(10) }
            let afterCast = await counters.call { try await $0.add(0) }
            #expect(try afterCast.map { try $0.get() } == [11, 111, 211, 311])
            let odd = try counters.slice([3, 1])
            #expect(odd.ranks == [1, 3])
            #expect(try await odd.call { try await $0.rank() }.map { try $0.get() } == [1, 3])
            #expect(throws: ActorMeshError.ranksOutOfRange([7], count: 4)) { try counters.slice([1, 7]) }
            #expect(try await counters[2].add(5) == 216)
            // Found without naming the system: the procs registered with it.
            let again = try await procs.spawnActors(MeshCounter.self, name: "others") { _ in 7 }
            #expect(try await again.call { try await $0.add(0) }.map { try $0.get() } == [7, 7, 7, 7])
            await again.stop()
            #expect(await expectCallError { try await again[0].add(1) } == .actorNotFound(again[0].id))
        }
    }

    @Test("kill -9 of rank 2 fails its pending and later calls with procDied(rank: 2) while the others keep working")
    func killRank2() async throws {
        try await withProcMesh { procs, system in
            let counters = try await procs.spawnActors(MeshCounter.self, name: "counters", on: system) { rank in rank }
            let events = Locked<[ActorMeshEvent]>([])
            let stream = counters.events()
            let listener = Task { for await e in stream { events.withLock { $0.append(e) } } }
            defer { listener.cancel() }
            let pid = try await counters[2].processID()
            let probes = try await procs.spawnActors(MeshProbe.self, name: "probes", on: system) { _ in 0 }
            #expect(pid == procs.lastKnown[2].pid)
            // Calls pending on every rank: rank 2's would take a minute.
            let doomed = counters[2]
            let pending2 = Task { try await doomed.hold(milliseconds: 60_000) }
            let others = try counters.slice([0, 1, 3])
            let pendingOthers = Task { await others.call { try await $0.hold(milliseconds: 3_000) } }
            // Every rank is running its call when rank 2 dies.
            try await waitUntil("every rank holding") {
                let logs = await probes.call { try await $0.workLog() }
                return logs.enumerated().allSatisfy { (try? $0.element.get())?.contains("holding \($0.offset)") == true }
            }
            let killed = ContinuousClock.now
            #expect(kill(pid, SIGKILL) == 0)
            let result2 = await pending2.result
            let elapsed = ContinuousClock.now - killed
            // At once: well inside the links' 5 s liveness bound, not after the call's minute.
            #expect(elapsed < .seconds(4), "rank 2's pending call failed \(elapsed) after the kill")
            guard case .failure(let error) = result2, case .procDied(let rank, _)? = error as? ActorCallError else {
                Issue.record("rank 2's pending call ended with \(result2)")
                return
            }
            #expect(rank == 2)
            let outcomes = await pendingOthers.value
            #expect(try outcomes.map { try $0.get() } == [0, 1, 3])
            // Supervision reported it, and only for rank 2.
            try await waitUntil("a procDied event for rank 2") {
                events.value.contains { if case .procDied(2, _) = $0 { return true }; return false }
            }
            #expect(!events.value.contains { if case .procDied(let r, _) = $0 { return r != 2 }; return false })
            // Later calls: rank 2 fails at once, the others answer.
            let later = await counters.call { try await $0.add(1) }
            #expect(try later[0].get() == 1 && later[1].get() == 2 && later[3].get() == 4)
            guard case .failure(let e2) = later[2], case .procDied(2, _)? = e2 as? ActorCallError else {
                Issue.record("rank 2's later call ended with \(later[2])")
                return
            }
            // The other actor mesh on the same procs sees the same death.
            let probesLater = await probes.call { try await $0.workLog() }
            if case .failure(let e3) = probesLater[2], case .procDied(2, _)? = e3 as? ActorCallError {} else {
                Issue.record("rank 2's probe answered \(probesLater[2])")
            }
            #expect(probesLater.enumerated().filter { $0.offset != 2 }.allSatisfy { (try? $0.element.get()) != nil })
            await probes.stop()
            let direct = await expectCallError { try await counters[2].add(1) }
            guard case .procDied(2, _)? = direct else { Issue.record("a direct call to rank 2 gave \(String(describing: direct))"); return }
            // The agent's report: killed by signal 9.
            try await waitUntil("the agent's report of rank 2") {
                procs.lastKnown[2].state == .killed(signal: SIGKILL)
            }
            _ = system
        }
    }

    @Test("spawning a type the procs do not register, or a name in use, fails naming each rank")
    func spawnFailures() async throws {
        try await withProcMesh(agents: 1, perHost: 2) { procs, system in
            do {
                _ = try await procs.spawnActors(Unregistered.self, name: "nobody", on: system) { _ in 0 }
                Issue.record("an unregistered type spawned")
            } catch let error as ActorMeshError {
                guard case .spawnFailed("nobody", let failures) = error else { Issue.record("unexpected \(error)"); return }
                #expect(failures.map(\.rank) == [0, 1])
                #expect(failures.allSatisfy { $0.reason.contains("registers no mesh actor type") })
            }
            let first = try await procs.spawnActors(MeshCounter.self, name: "taken", on: system) { _ in 0 }
            await #expect(throws: ActorMeshError.self) {
                _ = try await procs.spawnActors(MeshCounter.self, name: "taken", on: system) { _ in 0 }
            }
            #expect(try await first[1].add(1) == 1)
            await #expect(throws: ActorMeshError.invalidName("bad name", problem: "byte 0x20 is not allowed in a name (letters, digits, \".\", \"_\", \"-\")")) {
                _ = try await procs.spawnActors(MeshCounter.self, name: "bad name", on: system) { _ in 0 }
            }
        }
    }
}

extension ActorMeshTests {
    @Test("a proc without a client address, or whose agent is unreachable, exits with a typed code and says why")
    func actorHostRefusesBadEnvironment() async throws {
        let executable = try builtExecutable("ActorPeerFixture")
        guard let refusing = RefusingPort() else { throw TestFailure("no refusing port") }
        defer { refusing.close() }
        let base = [
            "SPINDLE_MESH": "m", "SPINDLE_RANK": "0", "SPINDLE_WORLD_SIZE": "1", "SPINDLE_HOST_RANK": "0",
            "SPINDLE_LOCAL_RANK": "0", "SPINDLE_AGENT_ADDR": "\(refusing.address)",
        ]
        let loop = try EventLoop(name: "actor-host-env")
        do {
            for (extra, code, phrase) in [([String: String](), Int32(78), "SPINDLE_CLIENT_ADDR"),
                                          (["SPINDLE_CLIENT_ADDR": "\(refusing.address)"], Int32(69), "cannot reach its agent")] {
                var options = ProcessOptions(executable: executable, arguments: [])
                options.environment = base.merging(extra) { $1 }
                options.stdin = .ignore
                options.stdout = .ignore
                options.stderr = .pipe
                options.parentDeathSignal = SIGKILL
                let child = try await ChildProcess.spawn(on: loop, options)
                let reader = LineReader()
                reader.start(try #require(child.stderr))
                let line = try await reader.line(startingWith: "spindle actor host:")
                #expect(line.contains(phrase), "\(line)")
                #expect(await child.wait() == .exited(code: code))
            }
        } catch {
            await loop.shutdown()
            throw error
        }
        await loop.shutdown()
    }
}
