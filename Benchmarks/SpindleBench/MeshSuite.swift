import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// `spindle-bench mesh`: attach + config push to 8 in-process agents over TCP loopback, then
/// spawn 16 `spindle proc` procs across them until all are ready, then stop them.
///
/// Baselines in the same run: for attach, 8 bare TCP connects each with one request/reply
/// round trip on the same transport (what attach cannot do without); for spawn, starting 16
/// `/bin/true` processes and reaping them (the process-creation floor). The issue's targets
/// (attach ≤ 5 ms, 16 procs ready ≤ 300 ms) are printed as notes.
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
        c.allowedPrograms = [spindle, "true"]
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

    // Baseline: start 16 /bin/true and reap them, concurrently.
    var floorTimes: [Double] = []
    for _ in 0..<5 {
        let t0 = SystemClock().now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    var o = ProcessOptions(executable: "/bin/true")
                    o.stdin = .ignore
                    o.stdout = .ignore
                    o.stderr = .ignore
                    let p = try await ChildProcess.spawn(on: loop, o)
                    _ = await p.wait()
                }
            }
            try await group.waitForAll()
        }
        floorTimes.append(Double((SystemClock().now() - t0).nanosecondsClamped) / 1e6)
    }
    let median = { (xs: [Double]) in xs.sorted()[xs.count / 2] }
    reporter.report(BenchResult(suite: "mesh", benchmark: "spawn 16 procs on 8 agents until all ready",
                                value: median(spawnTimes), unit: "ms", baseline: "16× spawn+reap /bin/true",
                                baselineValue: median(floorTimes), higherIsBetter: false))
    reporter.report(BenchResult(suite: "mesh", benchmark: "stop 16 procs until all final",
                                value: median(stopTimes), unit: "ms", higherIsBetter: false))
    reporter.note("spawn target ≤ 300 ms: \(median(spawnTimes) <= 300 ? "met" : "missed") (\(fmt(median(spawnTimes))) ms)")

    for a in agents { await a.shutdown() }
    await transport.shutdown()
    await loop.shutdown()
}
