import NetworkTestSupport
import SpindleEventLoop
@testable import SpindleHostMesh
import SpindleKernel
import SpindleSupport
import SpindleTCP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Real agents, real processes, TCP on loopback.
@Suite("Host agents over TCP with real procs", .serialized)
struct AgentTests {
    @Test("attach to 2 agents installs the config on both; procs read it back; stop ends every proc")
    func attachSpawnReadBackStop() async throws {
        let spindle = try spindleBinary()
        let dir = try makeTempDirectory()
        defer { removeTree(dir) }
        try await withAgents(2) { _, transport, agents, addresses in
            let config = ConfigSnapshot(["model": "colony", "seed": "42"])
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: config, timeout: .seconds(10),
                                                 transport: transport, configuration: testMeshConfiguration())
            #expect(agents.map(\.installedConfig) == [config, config])
            let procs = try await mesh.spawnProcs(name: "readers", perHost: 1) { rank in
                BootstrapCommand(program: spindle, arguments: ["proc", "--config-out", "\(dir)/rank-\(rank).txt"])
            }
            for rank in 0..<2 {
                #expect(readText("\(dir)/rank-\(rank).txt") == "model=colony\nseed=42\n")
            }
            #expect(await procs.states() == [.ready, .ready])
            let pids = procs.lastKnown.compactMap(\.pid)
            #expect(pids.count == 2)
            #expect(agents[1].procs().map(\.rank) == [1])
            try await procs.stop()
            for st in procs.lastKnown {
                #expect(st.state == .stopped(exitCode: 0, stderrTail: []), "rank \(st.rank): \(st.state)")
            }
            #expect(pids.allSatisfy { !isAlive($0) })
            await mesh.shutdown()
        }
    }

    @Test("attach with one unreachable address fails naming exactly that host")
    func unreachableHost() async throws {
        try await withAgents(1) { _, transport, _, addresses in
            let deadPort = try #require(RefusingPort())
            defer { deadPort.close() }
            let dead = deadPort.address
            do throws(HostMeshError) {
                _ = try await HostMesh.attach(name: "m", hosts: [addresses[0], dead], config: ConfigSnapshot(["a": "1"]),
                                              timeout: .seconds(2), transport: transport, configuration: testMeshConfiguration())
                Issue.record("attach succeeded")
            } catch {
                guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); return }
                #expect(e.failedHosts == [dead])
                #expect(e.failures[0].rank == 1)
                switch e.failures[0].cause {
                case .unreachable, .timedOut: break
                default: Issue.record("unexpected cause \(e.failures[0].cause)")
                }
                #expect(e.description.contains(dead.description))
                #expect(!e.description.contains(addresses[0].description))
            }
        }
    }

    @Test("a wrong cluster key is refused and the host named")
    func wrongKey() async throws {
        try await withAgents(1, key: ClusterKey.random()) { loop, _, _, addresses in
            let wrong = makeTransport(loop: loop, key: ClusterKey.random())
            do throws(HostMeshError) {
                _ = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(),
                                              timeout: .seconds(5), transport: wrong)
                Issue.record("attach with a wrong key succeeded")
            } catch {
                guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); await wrong.shutdown(); return }
                #expect(e.failedHosts == addresses)
                guard case .refusedAuthentication = e.failures[0].cause else {
                    Issue.record("expected refused authentication, got \(e.failures[0].cause)")
                    await wrong.shutdown()
                    return
                }
            }
            await wrong.shutdown()
        }
    }

    @Test("a disallowed program is refused with a typed error; a non-loopback listen needs a key")
    func security() async throws {
        try await withAgents(1) { loop, transport, _, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(),
                                                 timeout: .seconds(5), transport: transport, configuration: testMeshConfiguration())
            do throws(ProcMeshError) {
                _ = try await mesh.spawnProcs(name: "evil", perHost: 1) { _ in
                    BootstrapCommand(program: "/usr/bin/env", arguments: ["true"])
                }
                Issue.record("disallowed program was started")
            } catch {
                guard case .spawnRefused(_, let host, 0, .programNotAllowed(let program, _)) = error else {
                    Issue.record("wrong error \(error)"); return
                }
                #expect(host == addresses[0])
                #expect(program == "/usr/bin/env")
            }
            await mesh.shutdown()

            var open = HostAgent.Configuration()
            open.listenAddress = .tcp(host: "0.0.0.0", port: 0)
            let exposed = HostAgent(on: loop, transport: transport, configuration: open)
            await #expect(throws: HostAgentError.insecureListen(.tcp(host: "0.0.0.0", port: 0))) {
                try await exposed.start()
            }
        }
    }

    @Test("an agent's config validator rejects a snapshot and the attach names it")
    func rejectedConfig() async throws {
        try await withAgents(2, configure: { c in
            c.configValidator = { $0["forbidden"] != nil ? "key \"forbidden\" is not allowed here" : nil }
        }) { _, transport, agents, addresses in
            do throws(HostMeshError) {
                _ = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(["forbidden": "1"]),
                                              timeout: .seconds(5), transport: transport, configuration: testMeshConfiguration())
                Issue.record("attach succeeded")
            } catch {
                guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); return }
                #expect(e.failedHosts == addresses)
                #expect(e.failures.allSatisfy { $0.cause == .rejectedConfig("key \"forbidden\" is not allowed here") })
            }
            #expect(agents.allSatisfy { $0.installedConfig == nil })
        }
    }

    @Test("a bootstrap of `false` gives stopped(exit 1)")
    func falseExitsOne() async throws {
        try await withAgents(1) { _, transport, _, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(),
                                                 timeout: .seconds(5), transport: transport, configuration: testMeshConfiguration())
            do throws(ProcMeshError) {
                _ = try await mesh.spawnProcs(name: "f", perHost: 1) { _ in BootstrapCommand(program: "false") }
                Issue.record("spawn of false succeeded")
            } catch {
                guard case .procFailed(_, 0, let states) = error else { Issue.record("wrong error \(error)"); return }
                #expect(states == [.stopped(exitCode: 1, stderrTail: [])])
            }
            await mesh.shutdown()
        }
    }

    @Test("the stderr tail of a failing proc is reported")
    func stderrTail() async throws {
        try await withAgents(1) { _, transport, _, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(),
                                                 timeout: .seconds(5), transport: transport, configuration: testMeshConfiguration())
            do throws(ProcMeshError) {
                _ = try await mesh.spawnProcs(name: "s", perHost: 1) { _ in
                    BootstrapCommand(program: "sh", arguments: ["-c", "echo one >&2; echo two >&2; exit 3"])
                }
                Issue.record("spawn succeeded")
            } catch {
                #expect(error.states == [.stopped(exitCode: 3, stderrTail: ["one", "two"])])
            }
            await mesh.shutdown()
        }
    }

    @Test("kill -9 of a proc is reported as killed(signal 9)")
    func killedProc() async throws {
        let spindle = try spindleBinary()
        try await withAgents(1) { _, transport, _, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(),
                                                 timeout: .seconds(5), transport: transport, configuration: testMeshConfiguration())
            let procs = try await mesh.spawnProcs(name: "k", perHost: 2) { _ in
                BootstrapCommand(program: spindle, arguments: ["proc"])
            }
            let pid = try #require(procs.lastKnown[1].pid)
            #expect(kill(pid, SIGKILL) == 0)
            try await waitUntil("rank 1 reported killed") { procs.lastKnown[1].state == .killed(signal: 9) }
            #expect(procs.lastKnown[0].state == .ready)
            try await procs.stop()
            #expect(procs.lastKnown[0].state.isTerminal)
            await mesh.shutdown()
        }
    }

    @Test("killing an agent daemon with SIGKILL leaves no live procs")
    func agentKilled() async throws {
        try await withAgentDaemon("daemon-test") { daemon, transport, spindle in
            var pids: [Int32] = []
            do {
                let address = try await readListeningAddress(daemon)
                var conf = testMeshConfiguration()
                conf.livenessBound = .seconds(5)   // the client must see the agent go
                let mesh = try await HostMesh.attach(name: "m", hosts: [address], config: ConfigSnapshot(),
                                                     timeout: .seconds(10), transport: transport, configuration: conf)
                let procs = try await mesh.spawnProcs(name: "orphans", perHost: 2) { _ in
                    BootstrapCommand(program: spindle, arguments: ["proc"])
                }
                pids = procs.lastKnown.compactMap(\.pid)
                #expect(pids.count == 2)
                #expect(pids.allSatisfy(isAlive))
                try daemon.kill(SIGKILL)
                #expect(await daemon.wait() == .signaled(signal: SIGKILL))
                try await waitUntil("procs of the killed agent to die") { !pids.contains(where: isAlive) }
                try await waitUntil("the client to see the agent go", timeout: .seconds(30)) {
                    procs.lastKnown.allSatisfy { if case .hostLost = $0.state { true } else { false } }
                }
                await mesh.shutdown()
            } catch {
                for p in pids { kill(p, SIGKILL) }
                throw error
            }
        }
    }

    @Test("the daemon shuts down cleanly on SIGTERM, stopping its procs")
    func daemonSigterm() async throws {
        try await withAgentDaemon("daemon-term-test") { daemon, transport, spindle in
            let address = try await readListeningAddress(daemon)
            let mesh = try await HostMesh.attach(name: "m", hosts: [address], config: ConfigSnapshot(),
                                                 timeout: .seconds(10), transport: transport, configuration: testMeshConfiguration())
            let procs = try await mesh.spawnProcs(name: "p", perHost: 1) { _ in
                BootstrapCommand(program: spindle, arguments: ["proc"])
            }
            let pid = try #require(procs.lastKnown[0].pid)
            // Another session (this admin view) sees the agent and its one client, not the procs.
            let status = MeshAdmin.table(await MeshAdmin(meshes: [mesh.ref]).status(transport: transport))
            #expect(status.contains("1 client"))
            #expect(!status.contains("ready"))
            try daemon.kill(SIGTERM)
            #expect(await daemon.wait() == .exited(code: 0))
            #expect(!isAlive(pid))
            await mesh.shutdown()
        }
    }
}

extension AgentTests {
    @Test("`spindle mesh status` prints a table of hosts and procs; a bad ref names the problem")
    func meshStatusCommand() async throws {
        let spindle = try spindleBinary()
        try await withAgents(2) { _, transport, _, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(["k": "v"]),
                                                 timeout: .seconds(10), transport: transport, configuration: testMeshConfiguration())
            // Another client (the CLI) sees detached proc meshes only.
            let hidden = try await mesh.spawnProcs(name: "hidden", perHost: 1) { _ in
                BootstrapCommand(program: spindle, arguments: ["proc"])
            }
            let procs = try await mesh.spawnProcs(name: "shown", perHost: 1, detached: true) { _ in
                BootstrapCommand(program: spindle, arguments: ["proc"])
            }
            let other = try HostMeshRef(name: "other", hosts: [addresses[1]])
            let (code, output) = try await runCapturing(spindle,
                                                        ["mesh", "status", mesh.ref.description, other.description])
            #expect(code == .exited(code: 0))
            let lines = output.split(separator: "\n")
            #expect(lines.first?.hasPrefix("HOST") == true)
            #expect(lines.count == 3, "one row per proc, hosts de-duplicated: \(output)")
            #expect(lines.filter { $0.contains("shown (detached)") && $0.contains("ready") }.count == 2)
            #expect(!output.contains("hidden"))
            #expect(lines.last?.contains("m,other") == true)
            try await procs.stop()
            try await hidden.stop()
            await mesh.shutdown()

            let (badCode, _) = try await runCapturing(spindle, ["mesh", "status", "no-at-sign"])
            #expect(badCode != .exited(code: 0))
        }
    }
}

extension AgentTests {
    @Test("any program is a proc once it connects back: MeshProc hello, config, ready, fetchConfig")
    func meshProcInProcess() async throws {
        let dir = try makeTempDirectory()
        defer { removeTree(dir) }
        try await withAgents(1) { _, transport, agents, addresses in
            var conf = testMeshConfiguration()
            conf.clientAddress = .tcp(host: "127.0.0.1", port: 9999)
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(["gen": "1"]),
                                                 timeout: .seconds(10), transport: transport, configuration: conf)
            // The "program" only sleeps; this test plays its part over the proc protocol.
            let spawn = Task {
                try await mesh.spawnProcs(name: "svc", perHost: 1) { _ in
                    BootstrapCommand(program: "sh", arguments: ["-c", "env > \(dir)/env.tmp && mv \(dir)/env.tmp \(dir)/env.txt; exec sleep 30"],
                                     environment: ["EXTRA": "x"])
                }
            }
            try await waitUntil("the proc to be running") { agents[0].procs().first?.state == .running }
            try await waitUntil("the proc to write its environment") { readText("\(dir)/env.txt") != nil }
            let envLines = Set((readText("\(dir)/env.txt") ?? "").split(separator: "\n").map(String.init))
            for expected in ["SPINDLE_MESH=svc", "SPINDLE_RANK=0", "SPINDLE_WORLD_SIZE=1", "SPINDLE_HOST_RANK=0",
                             "SPINDLE_LOCAL_RANK=0", "SPINDLE_AGENT_ADDR=\(addresses[0])",
                             "SPINDLE_CLIENT_ADDR=tcp://127.0.0.1:9999", "EXTRA=x"] {
                #expect(envLines.contains(expected), "missing \(expected)")
            }
            let token = envLines.first { $0.hasPrefix("SPINDLE_PROC_TOKEN=") }.map { String($0.dropFirst(19)) }
            #expect(token != nil)
            let env = ProcEnvironment(mesh: "svc", rank: 0, worldSize: 1, hostRank: 0, localRank: 0,
                                      agentAddress: addresses[0], clientAddress: conf.clientAddress, token: token)
            let proc = try await MeshProc.connect(environment: env, transport: transport)
            #expect(proc.config == ConfigSnapshot(["gen": "1"]))
            try proc.announceReady()
            let procs = try await spawn.value
            #expect(procs.lastKnown.map(\.state) == [.ready])
            try await mesh.pushConfig(ConfigSnapshot(["gen": "2"]))
            #expect(try await proc.fetchConfig() == ConfigSnapshot(["gen": "2"]))
            // A hello without this start's token is refused (readiness is tied to the start).
            var impostor = env
            impostor.token = "0123"
            await #expect(throws: MeshProcError.self) { _ = try await MeshProc.connect(environment: impostor, transport: transport) }
            // A hello for a rank the agent does not run is refused.
            var stranger = env
            stranger.rank = 5
            stranger.worldSize = 6
            await #expect(throws: MeshProcError.self) { _ = try await MeshProc.connect(environment: stranger, transport: transport) }
            try await procs.stop()
            #expect(procs.lastKnown.map(\.state) == [.killed(signal: SIGTERM)])
            proc.close()
            await mesh.shutdown()
        }
    }
}

/// Runs `program` to completion (on a loop of its own) and returns its exit status and stdout.
func runCapturing(_ program: String, _ arguments: [String]) async throws -> (SpindleEventLoop.ExitStatus, String) {
    let loop = try EventLoop(name: "run-capturing")
    var o = ProcessOptions(executable: program, arguments: arguments)
    o.stdin = .ignore
    o.stderr = .ignore
    let child = try await ChildProcess.spawn(on: loop, o)
    let buffer = Locked<[UInt8]>([])
    let closed: Void? = await withDeadline(.seconds(30), late: { _ in }) {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let once = ResumeOnce(c)
            child.stdout?.start(onRead: { bytes in buffer.withLock { $0 += bytes } }, onClose: { _ in once.resume(()) })
        }
    }
    if closed == nil { try? child.kill(SIGKILL) }
    let status = await child.wait()
    await loop.shutdown()
    return (status, String(decoding: buffer.withLock { $0 }, as: UTF8.self))
}

/// Reads the daemon's "spindle host-agent listening on ADDRESS" line from its stdout.
/// Starts `spindle host-agent` on 127.0.0.1 port 0 as a child of the test (stdout piped for
/// `readListeningAddress`, stderr inherited).
func spawnAgentDaemon(_ spindle: String, on loop: EventLoop, extra: [String] = []) async throws -> ChildProcess {
    // Liveness is not what these daemons are for: a loaded machine must not lose their clients.
    var options = ProcessOptions(executable: spindle,
                                 arguments: ["host-agent", "--listen", "tcp://127.0.0.1:0", "--log-level", "warning",
                                             "--liveness", "60"] + extra)
    options.stdin = .ignore
    options.stderr = .inherit
    return try await ChildProcess.spawn(on: loop, options)
}

func readListeningAddress(_ daemon: ChildProcess, timeout: Duration = .seconds(20)) async throws -> Address {
    guard let out = daemon.stdout else { throw TestFailure("daemon has no stdout pipe") }
    let line: String? = await withDeadline(timeout, late: { _ in }) {
        await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
            let once = ResumeOnce(c)
            let buffer = Locked<[UInt8]>([])
            out.start(onRead: { bytes in
                let text = buffer.withLock { b -> String? in
                    b += bytes
                    guard let nl = b.firstIndex(of: 10) else { return nil }
                    return String(decoding: b[..<nl], as: UTF8.self)
                }
                if let text { once.resume(text) }
            }, onClose: { _ in once.resume(nil) })
        }
    } ?? nil
    guard let line, let range = line.range(of: "listening on ") else {
        throw TestFailure("daemon did not report its address (line: \(line ?? "none"))")
    }
    return try Address(parsing: String(line[range.upperBound...]))
}

/// Runs `body` with a `spindle host-agent` daemon (see `spawnAgentDaemon`) and a plaintext
/// transport, both on a loop named `loopName`. Whatever `body` does, everything is cleaned up:
/// when it throws, the daemon is continued (it may be stopped) and killed first.
func withAgentDaemon<R>(_ loopName: String, extra: [String] = [],
                        _ body: (_ daemon: ChildProcess, _ transport: any Transport, _ spindle: String) async throws -> R)
    async throws -> R {
    let spindle = try spindleBinary()
    let loop = try EventLoop(name: loopName)
    let transport = makeTransport(loop: loop, key: nil)
    func shutDown() async {
        await transport.shutdown()
        await loop.shutdown()
    }
    do {
        let daemon = try await spawnAgentDaemon(spindle, on: loop, extra: extra)
        do {
            let result = try await body(daemon, transport, spindle)
            await shutDown()
            return result
        } catch {
            try? daemon.kill(SIGCONT)
            try? daemon.kill(SIGKILL)
            _ = await daemon.wait()
            throw error
        }
    } catch {
        await shutDown()
        throw error
    }
}
