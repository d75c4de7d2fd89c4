import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `spindle-bench cluster`: Spindle across 3 hosts that are network namespaces on this machine
/// (scripts/testcluster up 3), each running `spindle host-agent` with a cluster key, driven
/// from the root namespace over the namespaces' bridge. Root only; skipped with a note
/// otherwise.
///
/// Rows: attach + config push to the 3 agents; spawning 6 `spindle proc` procs until all are
/// ready; a remote runner tick with 6 colony shard servers (`spindle-shard`, 2 per host), and
/// with 6 idle ones (the barrier rounds alone). Each beside the floor measured in the same run:
/// the p50 of 64-byte TCP round trips between the root namespace and an echo server inside a
/// host namespace (`spindle-bench --echo-server`). Runs only when named (it replaces any
/// testcluster hosts that exist).
let clusterSuite = BenchSuite(name: "cluster", onlyWhenNamed: true) { reporter in
    guard getuid() == 0 else {
        reporter.note("cluster: skipped — it needs root to create network namespaces (scripts/testcluster)")
        return
    }
    guard let bench = siblingExecutable("spindle-bench"), let spindle = siblingExecutable("spindle"),
          let shardServer = siblingExecutable("spindle-shard"), siblingExecutable("spindle-keeper") != nil else {
        reporter.note("cluster: skipped — spindle, spindle-keeper and spindle-shard must be built beside spindle-bench "
                      + "(swift build -c release)")
        return
    }
    guard let script = testclusterScript() else {
        reporter.note("cluster: skipped — scripts/testcluster not found above \(bench) (set SPINDLE_TESTCLUSTER)")
        return
    }
    let loop = try EventLoop(name: "bench-cluster")
    let cluster = try await BenchCluster.up(3, script: script, loop: loop)
    do {
        try await clusterBenchmarks(reporter, cluster: cluster, bench: bench, spindle: spindle, shardServer: shardServer)
    } catch {
        await cluster.down()
        await loop.shutdown()
        throw error
    }
    await cluster.down()
    await loop.shutdown()
}

private func clusterBenchmarks(_ reporter: BenchReporter, cluster: BenchCluster, bench: String, spindle: String,
                               shardServer: String) async throws {
    let hostCount = cluster.hosts.count
    let key = cluster.directory + "/cluster.key"
    _ = try await cluster.run([spindle, "keygen", key])
    let agents = try await cluster.startInEachHost { host in
        [spindle, "host-agent", "--listen", "tcp://\(host.address):0", "--key-file", key,
         "--allow", spindle, shardServer, "--grace", "2", "--log-level", "warning"]
    }
    let addresses = try await agents.asyncMap { try Address(parsing: String(try await $0.line(containing: "listening on")
        .split(separator: " ").last!)) }

    // The floor: 64-byte TCP round trips from here to an echo server in each host.
    let echoes = try await cluster.startInEachHost { host in [bench, "--echo-server", "tcp://\(host.address):0"] }
    var floors: [Double] = []
    for (echo, host) in zip(echoes, cluster.hosts) {
        let address = try Address(parsing: String(try await echo.line(containing: "echo listening on").split(separator: " ").last!))
        let trips = try EchoPingPong.roundTrips(to: address, count: 5_000)
        floors.append(trips.microseconds(at: 50))
        reporter.note("TCP round trip root ↔ \(host.name): p50 \(fmt(trips.microseconds(at: 50))) µs, "
                      + "p99 \(fmt(trips.microseconds(at: 99))) µs")
    }
    let floor = median(floors)  // µs
    let floorName = "TCP RTT p50"

    var tcp = TCPTransport.Configuration()
    tcp.clusterKey = try ClusterKey(contentsOfFile: key)
    tcp.logger.logLevel = .warning
    let transport = TCPTransport(loop: cluster.loop, configuration: tcp)
    var meshConfig = HostMesh.Configuration()
    meshConfig.logger.logLevel = .warning
    let snapshot = ConfigSnapshot(["model": "colony", "shards": "\(2 * hostCount)", "seed": "42"])
    var mesh: HostMesh? = nil
    func cleanUp() async {
        await mesh?.shutdown()
        await transport.shutdown()
    }
    do {
        // Attach + config push to every agent.
        let attach = try await measureAsync(iterations: 10, rounds: 5) { n in
            for _ in 0..<n {
                let m = try await HostMesh.attach(name: "bench", hosts: addresses, config: snapshot, timeout: .seconds(10),
                                                  transport: transport, configuration: meshConfig)
                await m.shutdown()
            }
        }
        reporter.report(BenchResult(suite: "cluster", benchmark: "attach + config push, \(hostCount) hosts",
                                    value: attach * 1e3, unit: "ms", baseline: floorName, baselineValue: floor / 1e3,
                                    higherIsBetter: false))

        // Spawn 2 procs per host until all are ready (each connects back to its agent and
        // announces itself), then stop them.
        let m = try await HostMesh.attach(name: "bench", hosts: addresses, config: snapshot, timeout: .seconds(10),
                                          transport: transport, configuration: meshConfig)
        mesh = m
        var spawnTimes: [Double] = []
        for round in 0..<6 {
            let t0 = SystemClock().now()
            let procs = try await m.spawnProcs(name: "bench-\(round)", perHost: 2) { _ in
                BootstrapCommand(program: spindle, arguments: ["proc", "--log-level", "warning"])
            }
            let t1 = SystemClock().now()
            try await procs.stop()
            if round > 0 { spawnTimes.append(Double((t1 - t0).nanosecondsClamped) / 1e6) }
        }
        reporter.report(BenchResult(suite: "cluster", benchmark: "spawn \(2 * hostCount) procs until all ready, \(hostCount) hosts",
                                    value: median(spawnTimes), unit: "ms", baseline: floorName, baselineValue: floor / 1e3,
                                    higherIsBetter: false))

        // The remote runner: 2 shard servers per host dial a coordinator listening here.
        for model in ["colony", "idle"] {
            let tick = try await remoteTick(mesh: m, transport: transport, shardServer: shardServer, model: model,
                                            shards: 2 * hostCount)
            let what = model == "colony" ? "remote runner tick, \(hostCount) hosts" : "remote runner tick, idle shards, \(hostCount) hosts"
            reporter.report(BenchResult(suite: "cluster", benchmark: what, value: tick * 1e6, unit: "µs/tick",
                                        baseline: floorName, baselineValue: floor, higherIsBetter: false))
        }
        let local = try await inProcessColonyTick()
        reporter.note("the same colony in one in-process shard: \(fmt(local * 1e6)) µs/tick (its compute, no network)")
    } catch {
        await cleanUp()
        throw error
    }
    await cleanUp()
}

/// Seconds per tick of a runner over `shards` `spindle-shard --model MODEL` procs on `mesh`
/// (the colony at spindle-shard's default size), median of 5 runs of 100 ticks.
private func remoteTick(mesh: HostMesh, transport: TCPTransport, shardServer: String, model: String,
                        shards: Int) async throws -> Double {
    let coordinator = Coordinator()
    let listener = try await ShardServerListener.listen(on: .tcp(host: BenchCluster.rootAddress, port: 0), transport: transport,
                                                       hlc: coordinator.hlc,
                                                       expecting: Set((1...shards).map { ShardID(UInt64($0)) }))
    var procs: ProcMesh? = nil
    var runner: DistributedRunner? = nil
    func cleanUp() async {
        await runner?.shutdown()
        listener.shutdown()
        try? await procs?.stop()
    }
    do {
        procs = try await mesh.spawnProcs(name: "shards-\(model)", perHost: shards / mesh.hosts.count) { _ in
            BootstrapCommand(program: shardServer, arguments: ["--coordinator", "\(listener.address)", "--model", model])
        }
        let remotes = try await listener.waitForShards(count: shards, timeout: .seconds(60))
        let r = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) })
        runner = r
        _ = try await r.run(20)
        var ticks: [Double] = []
        for _ in 0..<5 {
            let t0 = SystemClock().now()
            blackHole(try await r.run(100))
            ticks.append(Double((SystemClock().now() - t0).nanosecondsClamped) / 1e9 / 100)
        }
        await cleanUp()
        return median(ticks)
    } catch {
        await cleanUp()
        throw error
    }
}

/// Seconds per tick of spindle-shard's default colony in one in-process shard.
private func inProcessColonyTick() async throws -> Double {
    let coordinator = Coordinator()
    let shards = try ColonyShard.makeShards(count: 1, configuration: ColonyConfiguration(seed: 42, nodeCount: 512, agentCount: 128),
                                            coordinator: coordinator)
    let runner = try DistributedRunner(coordinator: coordinator, shards: shards, configuration: RunnerConfiguration(parallelism: 1))
    _ = try await runner.run(20)
    let perTick = try await measureAsync(iterations: 100, rounds: 5) { n in blackHole(try await runner.run(n)) }
    await runner.shutdown()
    return perTick
}

/// scripts/testcluster: $SPINDLE_TESTCLUSTER, else found in a directory above this executable.
private func testclusterScript() -> String? {
    if let path = getenv("SPINDLE_TESTCLUSTER").map({ String(cString: $0) }), access(path, X_OK) == 0 { return path }
    guard var dir = siblingExecutable("spindle-bench") else { return nil }
    while let slash = dir.lastIndex(of: "/"), slash != dir.startIndex {
        dir = String(dir[..<slash])
        let candidate = dir + "/scripts/testcluster"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async throws -> [T] {
        var out: [T] = []
        out.reserveCapacity(count)
        for e in self { out.append(try await transform(e)) }
        return out
    }
}
