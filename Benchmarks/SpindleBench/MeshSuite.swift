import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// `spindle-bench mesh`: attach + config push to 8 in-process agents over TCP loopback, then
/// spawn 16 `spindle proc` procs across them until all are ready, then stop them.
///
/// Baselines in the same run: for attach, 8 bare TCP connects each with one request/reply
/// round trip on the same transport (what attach cannot do without); for spawn, starting 16
/// `spindle` processes that exit at once (the binary's start-up floor, which dominates), with
/// 16 `/bin/true` as a note (the process-creation floor). The issue's targets
/// (attach ≤ 5 ms, 16 procs ready ≤ 300 ms) are printed as notes. Last, one proc's spawn and
/// stop through its keeper against starting and killing the same program directly.
let meshSuite = BenchSuite(name: "mesh") { reporter in
    let loop = try EventLoop(name: "bench-mesh")
    let transport = TCPTransport(loop: loop)
    guard let me = ProgramAllowList.executablePath(),
          let slash = me.lastIndex(of: "/") else {
        reporter.note("mesh: cannot resolve own executable; skipped")
        return
    }
    let spindle = String(me[..<slash]) + "/spindle"
    guard access(spindle, X_OK) == 0 else {
        reporter.note("mesh: \(spindle) not built (swift build -c release --product spindle); skipped")
        await transport.shutdown()
        await loop.shutdown()
        return
    }

    var agents: [HostAgent] = []
    var addresses: [Address] = []
    for _ in 0..<8 {
        var c = HostAgent.Configuration()
        c.allowedPrograms = [spindle, "true", "sleep"]
        c.forwardProcStdout = false
        c.stopGrace = .seconds(2)
        c.logger.logLevel = .warning
        let agent = HostAgent(on: loop, transport: transport, configuration: c)
        addresses.append(try await agent.start())
        agents.append(agent)
    }
    var meshConfig = HostMesh.Configuration()
    meshConfig.logger.logLevel = .warning
    let snapshot = ConfigSnapshot(["model": "colony", "shards": "16", "seed": "42"])

    // Attach + config push to 8 agents.
    let attach = try await measureAsync(iterations: 20, rounds: 5) { n in
        for _ in 0..<n {
            let mesh = try await HostMesh.attach(name: "bench", hosts: addresses, config: snapshot, timeout: .seconds(10),
                                                 transport: transport, configuration: meshConfig)
            await mesh.shutdown()
        }
    }
    // Baseline: 8 connects + one request/reply each, concurrently (agentInfo is the cheapest request).
    let connectRTT = try await measureAsync(iterations: 20, rounds: 5) { n in
        for _ in 0..<n {
            blackHole(await MeshAdmin(meshes: [try HostMeshRef(name: "bench", hosts: addresses)])
                .status(transport: transport, timeout: .seconds(10)))
        }
    }
    reporter.report(BenchResult(suite: "mesh", benchmark: "attach + config push, 8 agents (TCP loopback)",
                                value: attach * 1e3, unit: "ms", baseline: "8× connect+RTT", baselineValue: connectRTT * 1e3,
                                higherIsBetter: false))
    reporter.note("attach target ≤ 5 ms: \(attach * 1e3 <= 5 ? "met" : "missed") (\(fmt(attach * 1e3)) ms)")

    // Spawn 16 procs across 8 agents until all ready, then stop.
    let mesh = try await HostMesh.attach(name: "bench", hosts: addresses, config: snapshot, timeout: .seconds(10),
                                         transport: transport, configuration: meshConfig)
    var spawnTimes: [Double] = []
    var stopTimes: [Double] = []
    for round in 0..<5 {
        let t0 = SystemClock().now()
        let procs = try await mesh.spawnProcs(name: "bench-\(round)", perHost: 2) { _ in
            BootstrapCommand(program: spindle, arguments: ["proc", "--log-level", "warning"])
        }
        let t1 = SystemClock().now()
        try await procs.stop()
        let t2 = SystemClock().now()
        spawnTimes.append(Double((t1 - t0).nanosecondsClamped) / 1e6)
        stopTimes.append(Double((t2 - t1).nanosecondsClamped) / 1e6)
    }
    await mesh.shutdown()

    // Baselines: start 16 processes at once and reap them — `spindle proc` without its
    // environment (it exits at the variable check: the binary's start-up floor) and /bin/true.
    func startAndReap16(_ executable: String, _ arguments: [String]) async throws -> Double {
        var times: [Double] = []
        for _ in 0..<5 {
            let t0 = SystemClock().now()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        var o = ProcessOptions(executable: executable, arguments: arguments)
                        o.environment = [:]
                        o.stdin = .ignore
                        o.stdout = .ignore
                        o.stderr = .ignore
                        let p = try await ChildProcess.spawn(on: loop, o)
                        _ = await p.wait()
                    }
                }
                try await group.waitForAll()
            }
            times.append(Double((SystemClock().now() - t0).nanosecondsClamped) / 1e6)
        }
        return times.sorted()[times.count / 2]
    }
    let startupFloor = try await startAndReap16(spindle, ["proc"])
    let trueFloor = try await startAndReap16("/bin/true", [])
    let median = { (xs: [Double]) in xs.sorted()[xs.count / 2] }
    reporter.report(BenchResult(suite: "mesh", benchmark: "spawn 16 procs on 8 agents until all ready",
                                value: median(spawnTimes), unit: "ms", baseline: "16× start+exit spindle",
                                baselineValue: startupFloor, higherIsBetter: false))
    reporter.note("process floor: 16× spawn+reap /bin/true \(fmt(trueFloor)) ms")
    reporter.report(BenchResult(suite: "mesh", benchmark: "stop 16 procs until all final",
                                value: median(stopTimes), unit: "ms", higherIsBetter: false))
    reporter.note("spawn target ≤ 300 ms: \(median(spawnTimes) <= 300 ? "met" : "missed") (\(fmt(median(spawnTimes))) ms)")

    // One proc's whole life through the keeper: spawn `sleep 600` until it runs, stop it
    // (SIGTERM to its group) until it is final. Baseline: the same life without the mesh —
    // start `sleep 600` directly, SIGTERM it, reap it.
    let cycleMesh = try await HostMesh.attach(name: "cycles", hosts: [addresses[0]], config: snapshot,
                                              timeout: .seconds(10), transport: transport, configuration: meshConfig)
    let started = SpawnOptions(readiness: .started)
    let cycle = try await measureAsync(iterations: 50, rounds: 5) { n in
        for _ in 0..<n {
            let procs = try await cycleMesh.spawnProcs(name: "cycle", perHost: 1, options: started) { _ in
                BootstrapCommand(program: "sleep", arguments: ["600"])
            }
            try await procs.stop()
        }
    }
    await cycleMesh.shutdown()
    let bare = try await measureAsync(iterations: 50, rounds: 5) { n in
        for _ in 0..<n {
            var o = ProcessOptions(executable: "sleep", arguments: ["600"])
            o.stdin = .ignore
            o.stdout = .ignore
            o.stderr = .ignore
            let p = try await ChildProcess.spawn(on: loop, o)
            try p.kill(SIGTERM)
            blackHole(await p.wait())
        }
    }
    reporter.report(BenchResult(suite: "mesh", benchmark: "spawn + stop one proc (keeper, own process group)",
                                value: cycle * 1e3, unit: "ms", baseline: "spawn+SIGTERM+reap sleep", baselineValue: bare * 1e3,
                                higherIsBetter: false))

    for a in agents { await a.shutdown() }
    await transport.shutdown()
    await loop.shutdown()
}
