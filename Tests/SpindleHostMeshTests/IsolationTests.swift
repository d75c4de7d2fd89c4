import Testing
import SpindleEventLoop
import SpindleKernel
import SpindleTCP
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

/// Client sessions: procs, names and config are each client's own; detached meshes belong
/// to the cluster; caps and pruning.
@Suite("Isolation between clients, detached meshes, caps")
struct IsolationTests {
    @Test("two clients, same mesh and proc-mesh names on the same two agents: each sees, configures and stops only its own")
    func twoClients() async throws {
        let spindle = try spindleBinary()
        let dir = try makeTempDirectory()
        defer { removeTree(dir) }
        try await withAgents(2) { _, transport, agents, addresses in
            func attach(_ owner: String) async throws -> HostMesh {
                try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(["owner": owner]),
                                          timeout: .seconds(20), transport: transport, configuration: testMeshConfiguration())
            }
            let a = try await attach("A")
            let b = try await attach("B")
            // HM-1 holds per client: each agent holds both snapshots.
            for agent in agents {
                #expect(Set(agent.installedConfigs) == [ConfigSnapshot(["owner": "A"]), ConfigSnapshot(["owner": "B"])])
            }
            func spawn(_ mesh: HostMesh, _ owner: String) async throws -> ProcMesh {
                try await mesh.spawnProcs(name: "workers", perHost: 1) { rank in
                    BootstrapCommand(program: spindle, arguments: ["proc", "--config-out", "\(dir)/\(owner)-\(rank).txt"])
                }
            }
            let pa = try await spawn(a, "A")
            let pb = try await spawn(b, "B")
            for rank in 0..<2 {
                #expect(readText("\(dir)/A-\(rank).txt") == "owner=A\n", "A's rank \(rank) reads A's config")
                #expect(readText("\(dir)/B-\(rank).txt") == "owner=B\n", "B's rank \(rank) reads B's config")
            }
            let pidsA = pa.lastKnown.compactMap(\.pid)
            let pidsB = pb.lastKnown.compactMap(\.pid)
            #expect(pidsA.count == 2 && pidsB.count == 2)
            #expect(Set(pidsA).isDisjoint(with: pidsB))
            #expect(agents[0].procs().count == 2, "the agent runs both clients' rank 0")
            #expect(await pa.states() == [.ready, .ready])
            #expect(await pb.states() == [.ready, .ready])
            // A third client sees neither.
            let status = MeshAdmin.table(await MeshAdmin(meshes: [a.ref]).status(transport: transport))
            #expect(!status.contains("workers"), "\(status)")
            #expect(status.contains("2 clients"), "\(status)")
            // A's config changes; B's does not.
            try await a.pushConfig(ConfigSnapshot(["owner": "A2"]))
            #expect(Set(agents[1].installedConfigs) == [ConfigSnapshot(["owner": "A2"]), ConfigSnapshot(["owner": "B"])])
            // A stops its "workers": B's keep running.
            try await pa.stop()
            #expect(pidsA.allSatisfy { !isAlive($0) })
            #expect(pidsB.allSatisfy(isAlive))
            #expect(await pb.states() == [.ready, .ready])
            try await pb.stop()
            await a.shutdown()
            await b.shutdown()
            for agent in agents { #expect(agent.installedConfigs.isEmpty, "shutdown ends each session and its config") }
        }
    }

    @Test("a failed attach removes the config it installed, and only its own")
    func failedAttachRemovesConfig() async throws {
        var index = 0
        try await withAgents(2, configure: { c in
            if index == 1 { c.configValidator = { $0["x"] != nil ? "no x here" : nil } }
            index += 1
        }) { _, transport, agents, addresses in
            let other = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(["y": "1"]),
                                                  timeout: .seconds(20), transport: transport, configuration: testMeshConfiguration())
            do throws(HostMeshError) {
                _ = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(["x": "1"]),
                                              timeout: .seconds(20), transport: transport, configuration: testMeshConfiguration())
                Issue.record("attach succeeded")
            } catch {
                guard case .configPush(let e) = error else { Issue.record("wrong error \(error)"); return }
                #expect(e.failedHosts == [addresses[1]])
                #expect(e.failures[0].cause == .rejectedConfig("no x here"))
            }
            // Host 0 took the snapshot; it is gone again, the other client's is not.
            #expect(agents[0].installedConfigs == [ConfigSnapshot(["y": "1"])])
            #expect(agents[1].installedConfigs == [ConfigSnapshot(["y": "1"])])
            await other.shutdown()
        }
    }

    @Test("detached proc meshes outlive their client; any client can list, read, and stop them by name")
    func detached() async throws {
        try await withAgents(1) { _, transport, agents, addresses in
            let a = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                              transport: transport, configuration: testMeshConfiguration())
            let svc = try await a.spawnProcs(name: "svc", perHost: 2, options: SpawnOptions(detached: true, readiness: .started)) { _ in
                BootstrapCommand(program: "sh", arguments: ["-c", "echo up $SPINDLE_RANK; exec sleep 600"])
            }
            let mine = try await a.spawnProcs(name: "mine", perHost: 1, options: SpawnOptions(readiness: .started)) { _ in
                BootstrapCommand(program: "sh", arguments: ["-c", "exec sleep 600"])
            }
            let svcPids = svc.lastKnown.compactMap(\.pid)
            let minePid = try #require(mine.lastKnown[0].pid)
            #expect(svcPids.count == 2)
            // A second detached mesh of a live name is refused: names are the cluster's.
            let other = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                  transport: transport, configuration: testMeshConfiguration())
            do throws(ProcMeshError) {
                _ = try await other.spawnProcs(name: "svc", perHost: 1, options: SpawnOptions(detached: true, readiness: .started)) { _ in
                    BootstrapCommand(program: "sh", arguments: ["-c", "exec sleep 600"])
                }
                Issue.record("a second live detached mesh named svc was started")
            } catch {
                guard case .spawnRefused(_, _, _, .duplicateRank("svc", _)) = error else { Issue.record("wrong error \(error)"); return }
            }
            await other.shutdown()
            await a.shutdown()
            try await waitUntil("the client's own proc to stop with its session") { !isAlive(minePid) }
            #expect(svcPids.allSatisfy(isAlive), "detached procs outlive their client")

            let admin = MeshAdmin(meshes: [try HostMeshRef(name: "m", hosts: addresses)])
            let listed = await admin.detached(transport: transport)
            let procs = try listed[0].result.get()
            #expect(procs.filter { $0.mesh == "svc" }.map(\.state) == [.ready, .ready])
            let logs = await admin.logs(of: "svc", follow: false, transport: transport)
            #expect(logs.failures.isEmpty)
            var lines: [String] = []
            for await entry in logs.lines { if case .line(let l) = entry { lines.append(l.description) } }
            #expect(Set(lines) == ["[0] up 0", "[1] up 1"])
            let stopped = await admin.stopDetached("svc", transport: transport)
            let final = try stopped[0].result.get()
            #expect(final.map(\.state) == [.killed(signal: SIGTERM), .killed(signal: SIGTERM)])
            #expect(svcPids.allSatisfy { !isAlive($0) })
            #expect(agents[0].procs().allSatisfy { $0.state.isTerminal })
        }
    }

    @Test("caps refuse with typed errors naming the limit; finished procs are pruned after their retention")
    func capsAndPruning() async throws {
        try await withAgents(1, configure: { c in
            c.limits.maxProcsPerClient = 3
            c.limits.finishedRetention = .milliseconds(300)
        }) { loop, transport, agents, addresses in
            var conf = testMeshConfiguration()
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: conf)
            let sh = { (_: Int) in BootstrapCommand(program: "sh", arguments: ["-c", "exec sleep 600"]) }
            do throws(ProcMeshError) {
                _ = try await mesh.spawnProcs(name: "many", perHost: 4, options: SpawnOptions(readiness: .started), bootstrap: sh)
                Issue.record("4 procs for a client allowed 3")
            } catch {
                guard case .spawnRefused(_, _, _, .limitExceeded(.procsPerClient(4, 0, 3))) = error else {
                    Issue.record("wrong error \(error)"); return
                }
            }
            #expect(agents[0].statistics.refusals["limit_procs_per_client"] == 1)
            // 100 000 procs: refused by the agent, nothing started.
            do throws(ProcMeshError) {
                _ = try await mesh.spawnProcs(name: "huge", perHost: 100_000) { _ in BootstrapCommand(program: "sh") }
                Issue.record("100 000 procs allowed")
            } catch {
                guard case .spawnRefused(_, _, _, .limitExceeded(let limit)) = error else { Issue.record("wrong error \(error)"); return }
                #expect(limit.name == "procs_per_request", "\(limit)")
            }
            // A 64 MiB environment (four frames' worth): refused before anything is sent, by
            // the same O(1) size check that refuses 1 GiB. (A 1 GiB string in the test process
            // stalls it for seconds — page faults and the unmap — and every test with it.)
            let huge = try await loop.submit {
                String(unsafeUninitializedCapacity: 64 << 20) { buffer in
                    buffer.initialize(repeating: UInt8(ascii: "x"))
                    return buffer.count
                }
            }
            do throws(ProcMeshError) {
                _ = try await mesh.spawnProcs(name: "fat", perHost: 1) { _ in
                    BootstrapCommand(program: "sh", environment: ["BIG": huge])
                }
                Issue.record("64 MiB environment sent")
            } catch {
                guard case .bootstrapTooLarge("fat", 0, let bytes, 1 << 20) = error else { Issue.record("wrong error \(error)"); return }
                #expect(bytes > 64 << 20)
            }
            // A client that would send 2 MiB meets the agent's own limit (1 MiB).
            conf.maxBootstrapBytes = 8 << 20
            let generous = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                     transport: transport, configuration: conf)
            do throws(ProcMeshError) {
                let two = String(unsafeUninitializedCapacity: 2 << 20) { buffer in
                    buffer.initialize(repeating: UInt8(ascii: "y"))
                    return buffer.count
                }
                _ = try await generous.spawnProcs(name: "fat", perHost: 1) { _ in
                    BootstrapCommand(program: "sh", arguments: [two])
                }
                Issue.record("2 MiB bootstrap started")
            } catch {
                guard case .spawnRefused(_, _, 0, .limitExceeded(.bootstrapBytes(0, let bytes, 1 << 20))) = error else {
                    Issue.record("wrong error \(error)"); return
                }
                #expect(bytes > 2 << 20)
            }
            await generous.shutdown()
            #expect(agents[0].procs().isEmpty, "refused spawns start nothing")

            // Pruning: a finished proc's state is queryable, then forgotten after the retention.
            let short = try await mesh.spawnProcs(name: "short", perHost: 1, options: SpawnOptions(readiness: .started)) { _ in
                BootstrapCommand(program: "sh", arguments: ["-c", "exit 0"])
            }
            try await waitUntil("the short proc to end") { short.lastKnown[0].state.isTerminal }
            #expect(await short.states() == [.stopped(exitCode: 0, stderrTail: [])])
            try await waitUntil("the agent to forget the finished proc") { agents[0].procs().isEmpty }
            #expect(await short.states() == [.stopped(exitCode: 0, stderrTail: [])], "the client keeps what it learned")
            await mesh.shutdown()
        }
    }

    @Test("a client that goes silent (SIGSTOP) is lost within the bound: its procs stop, the detached ones do not")
    func clientLost() async throws {
        let spindle = try spindleBinary()
        let tag = newTag()
        let loop = try EventLoop(name: "client-lost-test")
        // This agent loses a silent client after the production bound.
        var options = ProcessOptions(executable: spindle, arguments: [
            "host-agent", "--listen", "tcp://127.0.0.1:0", "--log-level", "warning", "--liveness", "5", "--allow", "sh"])
        options.stdin = .ignore
        options.stderr = .inherit
        let daemon = try await ChildProcess.spawn(on: loop, options)
        var clients: [ChildProcess] = []
        do {
            let address = try await readListeningAddress(daemon)
            let ref = "m@\(address)"
            // A detached mesh, started by a client that has gone since.
            let (spawned, _) = try await runCapturing(spindle, ["mesh", "spawn", ref, "--name", "kept", "--env", "SPINDLE_TEST_TAG=\(tag)-kept",
                                                                "--", "sh", "-c", "exec sleep 600"])
            #expect(spawned == .exited(code: 0))
            // A client (mesh run) whose procs are its own.
            var o = ProcessOptions(executable: spindle, arguments: [
                "mesh", "run", ref, "--per-host", "2", "--env", "SPINDLE_TEST_TAG=\(tag)", "--", "sh", "-c", "exec sleep 600"])
            o.stdin = .ignore
            o.stdout = .ignore
            o.stderr = .ignore
            let client = try await ChildProcess.spawn(on: loop, o)
            clients.append(client)
            try await waitUntil("the client's procs to run", timeout: .seconds(30), every: .milliseconds(200)) {
                taggedProcesses(tag).filter { $0.command == "sleep 600" }.count == 2
            }
            let kept = taggedProcesses("\(tag)-kept").filter { $0.command == "sleep 600" }
            #expect(kept.count == 1)
            let clock = ContinuousClock()
            let silent = clock.now
            try client.kill(SIGSTOP)
            try await waitUntil("the agent to stop the silent client's procs", timeout: .seconds(30), every: .milliseconds(200)) {
                taggedProcesses(tag).isEmpty
            }
            let after = clock.now - silent
            #expect(after < .seconds(15), "stopped \(after) after the client went silent (bound 5 s, grace 5 s)")
            #expect(kept.allSatisfy { isAlive($0.pid) }, "a detached proc is the cluster's")
            // The client, woken, finds its host lost (the agent ended its session) and says so.
            try client.kill(SIGCONT)
            let status: SpindleEventLoop.ExitStatus? = await withDeadline(.seconds(60), late: { _ in }) { await client.wait() }
            #expect(status == .exited(code: 69), "mesh run: \(String(describing: status))")
            let (stopped, _) = try await runCapturing(spindle, ["mesh", "stop", ref, "--name", "kept"])
            #expect(stopped == .exited(code: 0))
            #expect(kept.allSatisfy { !isAlive($0.pid) })
            try daemon.kill(SIGTERM)
            #expect(await daemon.wait() == .exited(code: 0))
        } catch {
            for c in clients { try? c.kill(SIGCONT); try? c.kill(SIGKILL); _ = await c.wait() }
            try? daemon.kill(SIGKILL)
            _ = await daemon.wait()
            await loop.shutdown()
            throw error
        }
        for c in clients where c.exitStatus == nil { try? c.kill(SIGKILL); _ = await c.wait() }
        await loop.shutdown()
    }
}
