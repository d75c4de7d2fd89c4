import SpindleEventLoop
import SpindleKernel
import SpindleTCP
import Testing
@testable import SpindleRunner

#if canImport(Glibc)
import Glibc
#endif

/// The `spindle-shard` executable built beside this test binary.
func shardServerExecutable() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw RunnerError.remoteFailure(shard: nil, reason: "cannot read /proc/self/exe") }
    let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var dir = exe
    while let slash = dir.lastIndex(of: "/"), !dir.hasSuffix("/debug"), !dir.hasSuffix("/release") {
        dir = String(dir[..<slash])
        if dir.isEmpty { break }
    }
    let path = dir + "/spindle-shard"
    guard access(path, X_OK) == 0 else {
        throw RunnerError.remoteFailure(shard: nil, reason: "\(path) is missing: build all products (swift build --build-tests)")
    }
    return path
}

/// Starts `count` `spindle-shard` processes serving a colony to a TCP listener on 127.0.0.1:0,
/// runs `body` with their remote shards, and always stops and reaps every process.
func withShardProcesses<T: Sendable>(
    count: Int, arguments: [String], _ body: (Coordinator, [RemoteShard], [ChildProcess]) async throws -> T
) async throws -> (T, [SpindleEventLoop.ExitStatus]) {
    let executable = try shardServerExecutable()
    let loop = try EventLoop(name: "shard-procs")
    let transport = try TCPTransport(loopCount: 1)
    let coordinator = Coordinator()
    var children: [ChildProcess] = []
    var listener: ShardServerListener? = nil
    func cleanUp() async -> [SpindleEventLoop.ExitStatus] {
        listener?.shutdown()
        var statuses: [SpindleEventLoop.ExitStatus] = []
        for c in children {
            // A child the coordinator's stop did not end within 10 s is killed.
            let status = await withTaskGroup(of: SpindleEventLoop.ExitStatus?.self) { g in
                g.addTask { await c.wait() }
                g.addTask { try? await Task.sleep(for: .seconds(10)); return nil }
                let first = await g.next() ?? nil
                g.cancelAll()
                return first
            }
            if let status { statuses.append(status) } else {
                try? c.kill(SIGKILL)
                statuses.append(await c.wait())
            }
        }
        await transport.shutdown()
        await loop.shutdown()
        return statuses
    }
    do {
        let l = try await ShardServerListener.listen(on: .tcp(host: "127.0.0.1", port: 0), transport: transport,
                                                    hlc: coordinator.hlc)
        listener = l
        for i in 1...count {
            var options = ProcessOptions(executable: executable,
                                         arguments: ["--coordinator", "\(l.address)", "--shard", "\(i)",
                                                     "--shards", "\(count)"] + arguments)
            options.stdin = .ignore
            options.stdout = .ignore
            options.stderr = .inherit
            options.parentDeathSignal = SIGKILL
            children.append(try await ChildProcess.spawn(on: loop, options))
        }
        let remotes = try await l.waitForShards(count: count, timeout: .seconds(60))
        let result = try await body(coordinator, remotes, children)
        return (result, await cleanUp())
    } catch {
        _ = await cleanUp()
        throw error
    }
}

@Suite("Remote shards in separate processes over TCP")
struct RemoteProcessTests {
    let configuration = ColonyConfiguration(seed: 77, nodeCount: 256, agentCount: 64)
    var colonyArguments: [String] { ["--seed", "77", "--nodes", "256", "--agents", "64"] }

    @Test("4 shard processes over TCP loopback give the in-process colony state", arguments: ["hashed", "ranges"])
    func colonyAcrossProcesses(placement: String) async throws {
        let local = try await runColony(shards: 1, ticks: 20, configuration: configuration)
        let strategy: PlacementStrategy = placement == "ranges" ? configuration.localityPlacement : .consistentHashing
        let (digest, statuses) = try await withShardProcesses(count: 4, arguments: colonyArguments + ["--placement", placement]) { coordinator, remotes, _ in
            #expect(remotes.map(\.id) == (1...4).map { ShardID(UInt64($0)) })
            let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) },
                                               configuration: RunnerConfiguration(placement: strategy))
            let results = try await runner.run(20)
            #expect(results.map(\.tick) == Array(1...20))
            #expect(results.reduce(0) { $0 + $1.crossShardEdges.count } > 0)
            let d = try await runner.stateDigest()
            await runner.shutdown()
            return d
        }
        #expect(digest == local.digest)
        // The listener's shutdown told every server to stop: they exit cleanly.
        #expect(statuses == Array(repeating: .exited(code: 0), count: 4))
    }

    @Test("a shard process that dies fails the next tick naming its shard")
    func deadProcess() async throws {
        let (error, _) = try await withShardProcesses(count: 2, arguments: colonyArguments) { coordinator, remotes, children in
            let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) },
                                               configuration: RunnerConfiguration(phaseTimeout: .seconds(30)))
            _ = try await runner.run(2)
            try children[1].kill(SIGKILL)
            _ = await children[1].wait()
            var failure: RunnerError? = nil
            // The connection's close may race the next request; within a few ticks it must show.
            for _ in 0..<5 {
                do { _ = try await runner.tick() } catch let e as RunnerError { failure = e; break }
            }
            await runner.shutdown()
            return failure
        }
        let e = try #require(error)
        #expect(e.description.contains("shard-2"), "\(e)")
    }
}
