import Testing
import SpindleEventLoop
import SpindleKernel
import SpindleRunner
import SpindleTCP
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

/// `spindle mesh run|spawn|stop|logs|status` against an agent daemon, and `--help` everywhere.
@Suite("spindle mesh commands", .serialized)
struct MeshCLITests {
    /// Runs `body` with a `spindle host-agent` daemon (allowing `sh`) and its mesh reference.
    static func withDaemon(keyFile: String? = nil,
                           _ body: (String, String) async throws -> Void) async throws {
        let spindle = try spindleBinary()
        let loop = try EventLoop(name: "mesh-cli-test")
        var extra = ["--allow", "sh", "--grace", "2"]
        if let keyFile { extra += ["--key-file", keyFile] }
        let daemon = try await spawnAgentDaemon(spindle, on: loop, extra: extra)
        do {
            let address = try await readListeningAddress(daemon)
            try await body(spindle, "m@\(address)")
        } catch {
            try? daemon.kill(SIGKILL)
            _ = await daemon.wait()
            await loop.shutdown()
            throw error
        }
        try daemon.kill(SIGTERM)
        #expect(await daemon.wait() == .exited(code: 0))
        await loop.shutdown()
    }

    @Test("mesh run: exit 0 when all exit 0, the first non-zero code, 128+signal; output is rank-prefixed")
    func runExitCodes() async throws {
        try await Self.withDaemon { spindle, ref in
            let (ok, out) = try await runCapturing(spindle, ["mesh", "run", ref, "--per-host", "2", "--", "sh", "-c",
                                                             "echo hello $SPINDLE_RANK of $SPINDLE_WORLD_SIZE"])
            #expect(ok == .exited(code: 0))
            #expect(Set(out.split(separator: "\n").map(String.init)) == ["[0] hello 0 of 2", "[1] hello 1 of 2"])
            let (three, _) = try await runCapturing(spindle, ["mesh", "run", ref, "--per-host", "2", "--", "sh", "-c",
                                                              "if [ \"$SPINDLE_RANK\" = 1 ]; then exit 3; fi"])
            #expect(three == .exited(code: 3))
            let (first, _) = try await runCapturing(spindle, ["mesh", "run", ref, "--per-host", "2", "--", "sh", "-c",
                                                              "if [ \"$SPINDLE_RANK\" = 1 ]; then exit 4; fi; sleep 2; exit 5"])
            #expect(first == .exited(code: 4), "the first to fail decides")
            let (signalled, _) = try await runCapturing(spindle, ["mesh", "run", ref, "--", "sh", "-c", "kill -9 $$"])
            #expect(signalled == .exited(code: 128 + 9))
            let (env, envOut) = try await runCapturing(spindle, ["mesh", "run", ref, "--env", "GREETING=hi", "--", "sh", "-c",
                                                                 "echo $GREETING"])
            #expect(env == .exited(code: 0))
            #expect(envOut == "[0] hi\n")
        }
    }

    @Test("SIGTERM to mesh run stops every proc's group before it exits")
    func runInterrupted() async throws {
        let tag = newTag()
        try await Self.withDaemon { spindle, ref in
            let loop = try EventLoop(name: "mesh-run-term")
            var o = ProcessOptions(executable: spindle, arguments: [
                "mesh", "run", ref, "--per-host", "2", "--env", "SPINDLE_TEST_TAG=\(tag)", "--", "sh", "-c", "sleep 600 & sleep 600"])
            o.stdin = .ignore
            o.stdout = .ignore
            o.stderr = .inherit
            let cli = try await ChildProcess.spawn(on: loop, o)
            do {
                try await waitUntil("both families to run", timeout: .seconds(30), every: .milliseconds(200)) {
                    taggedProcesses(tag).filter { $0.command.hasPrefix("sleep") }.count == 4
                }
                try cli.kill(SIGTERM)
                #expect(await cli.wait() == .exited(code: 128 + SIGTERM))
                #expect(taggedProcesses(tag).isEmpty, "mesh run waited for every group to end")
            } catch {
                try? cli.kill(SIGKILL)
                _ = await cli.wait()
                await loop.shutdown()
                throw error
            }
            await loop.shutdown()
        }
    }

    @Test("spawn, status, logs and stop round trip on a detached proc mesh, with a cluster key")
    func detachedRoundTrip() async throws {
        let spindle = try spindleBinary()
        let dir = try makeTempDirectory()
        defer { removeTree(dir) }
        let key = "\(dir)/cluster.key"
        #expect(try await runCapturing(spindle, ["keygen", key]).0 == .exited(code: 0))
        try await Self.withDaemon(keyFile: key) { spindle, ref in
            let k = ["--key-file", key, "--timeout", "20"]
            let (spawned, table) = try await runCapturing(spindle, ["mesh", "spawn", ref, "--name", "svc", "--per-host", "2"] + k
                                                          + ["--", "sh", "-c", "echo up $SPINDLE_RANK; exec sleep 600"])
            #expect(spawned == .exited(code: 0))
            let rows = table.split(separator: "\n").map { $0.split(separator: " ") }
            #expect(rows.map { $0.first.map(String.init) } == ["0", "1"])
            #expect(rows.allSatisfy { $0.count == 4 && $0[3] == "ready" && Int32($0[2]) != nil })
            let pids = rows.compactMap { Int32($0[2]) }
            #expect(pids.allSatisfy(isAlive), "the procs outlive the command that spawned them")

            let (statusCode, status) = try await runCapturing(spindle, ["mesh", "status", ref] + k)
            #expect(statusCode == .exited(code: 0))
            #expect(status.split(separator: "\n").filter { $0.contains("svc (detached)") && $0.contains("ready") }.count == 2)

            let (logsCode, logs) = try await runCapturing(spindle, ["mesh", "logs", ref, "--name", "svc"] + k)
            #expect(logsCode == .exited(code: 0))
            #expect(Set(logs.split(separator: "\n").map(String.init)) == ["[0] up 0", "[1] up 1"])

            let (stopCode, stopped) = try await runCapturing(spindle, ["mesh", "stop", ref, "--name", "svc"] + k)
            #expect(stopCode == .exited(code: 0))
            #expect(stopped.split(separator: "\n").filter { $0.hasSuffix("killed(signal 15)") }.count == 2)
            #expect(pids.allSatisfy { !isAlive($0) })

            let (missing, _) = try await runCapturing(spindle, ["mesh", "logs", ref, "--name", "nope"] + k)
            #expect(missing == .exited(code: 1))
            let (noKey, _) = try await runCapturing(spindle, ["mesh", "status", ref, "--timeout", "5"])
            #expect(noKey == .exited(code: 2), "without the key the agent cannot be asked")
        }
    }

    @Test("every executable and every mesh command answers --help with exit 0; a bad command line exits 64")
    func help() async throws {
        let spindle = try spindleBinary()
        let dir = String(spindle[..<spindle.lastIndex(of: "/")!])
        for exe in ["spindle", "spindle-demo", "spindle-bench", "spindle-shard"] {
            let (code, out) = try await runCapturing("\(dir)/\(exe)", ["--help"])
            #expect(code == .exited(code: 0), "\(exe) --help")
            #expect(out.contains("USAGE"), "\(exe) --help prints a usage")
        }
        for sub in [["mesh", "run"], ["mesh", "spawn"], ["mesh", "stop"], ["mesh", "logs"], ["mesh", "status"]] {
            let (code, out) = try await runCapturing(spindle, sub + ["--help"])
            #expect(code == .exited(code: 0), "\(sub) --help")
            #expect(out.contains("--key-file") && out.contains("--timeout"), "\(sub) --help lists --key-file and --timeout")
        }
        for bad in [["mesh", "run", "m@tcp://127.0.0.1:1"], ["mesh", "run", "no-at-sign", "--", "true"],
                    ["mesh", "spawn", "m@tcp://127.0.0.1:1", "--", "true"], ["mesh", "run", "m@tcp://127.0.0.1:1", "--env", "NOEQ", "--", "true"]] {
            let (code, _) = try await runCapturing(spindle, bad)
            #expect(code == .exited(code: 64), "\(bad)")
        }
    }

    @Test("spindle-shard shuts down gracefully and exits 0 within 20 s of SIGTERM and of SIGINT", arguments: [SIGTERM, SIGINT])
    func shardSignals(signal: Int32) async throws {
        let spindle = try spindleBinary()
        let shard = String(spindle[..<spindle.lastIndex(of: "/")!]) + "/spindle-shard"
        let loop = try EventLoop(name: "shard-signal-test")
        let transport = makeTransport(loop: loop, key: nil)
        let listener = try await ShardServerListener.listen(on: .tcp(host: "127.0.0.1", port: 0), transport: transport,
                                                            hlc: HybridLogicalClock(clock: SystemClock()))
        var o = ProcessOptions(executable: shard, arguments: ["--coordinator", listener.address.description,
                                                              "--shard", "1", "--shards", "1", "--model", "idle"])
        o.stdin = .ignore
        o.stdout = .ignore
        o.stderr = .inherit
        let child = try await ChildProcess.spawn(on: loop, o)
        do {
            // Serving: the shard said hello to its coordinator.
            _ = try await listener.waitForShards(count: 1, timeout: .seconds(60))
            try child.kill(signal)
            // Within a bound: a shard that ignores the signal fails the test instead of hanging it.
            let status = await withDeadline(.seconds(20), late: { _ in }) { await child.wait() }
            #expect(status == .exited(code: 0), "signal \(signal): \(status.map { "\($0)" } ?? "still running after 20 s")")
            if status == nil { throw TestFailure("spindle-shard did not exit within 20 s of signal \(signal)") }
        } catch {
            try? child.kill(SIGKILL)
            _ = await child.wait()
            listener.shutdown()
            await transport.shutdown()
            await loop.shutdown()
            throw error
        }
        listener.shutdown()
        await transport.shutdown()
        await loop.shutdown()
    }
}
