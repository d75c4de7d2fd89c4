// The `runner` suite: tick latency and colony throughput of SpindleRunner.
import CBaselines
import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// A shard whose phases do nothing: measures the runner's own cost per tick.
private final class EmptyShard: Shard {
    let id: ShardID
    init(_ id: UInt64) { self.id = ShardID(id) }
    func sense(_ context: ShardContext) throws -> Int { 0 }
    func act(_ context: ShardContext, output: inout ActOutput) throws -> Int { 0 }
    func decay(_ context: ShardContext) throws -> Int { 0 }
}

let runnerSuite = BenchSuite(name: "runner") { reporter in
    // Empty-phase tick latency, 4 in-process shards (3 barrier rounds per tick), with the default
    // spin before parking and with a longer one.
    for spin in [2_000, 50_000] {
        var config = RunnerConfiguration()
        config.spinIterations = spin
        let runner = try DistributedRunner(coordinator: Coordinator(), shards: (1...4).map { EmptyShard(UInt64($0)) },
                                           configuration: config)
        let perTick = try await measureAsync(iterations: 2_000) { n in blackHole(try await runner.run(n)) }
        await runner.shutdown()
        reporter.report(BenchResult(suite: "runner", benchmark: "empty tick, 4 in-process shards, spin \(spin / 1000)k",
                                    value: perTick * 1e6, unit: "µs/tick", higherIsBetter: false))
    }

    // Colony throughput with 1, 2 and 4 in-process shards.
    let colony = ColonyConfiguration(seed: 42, nodeCount: 4_096, agentCount: 1_024)
    var oneShard: Double? = nil
    for shards in [1, 2, 4] {
        let coordinator = Coordinator()
        let members = try ColonyShard.makeShards(count: shards, configuration: colony, coordinator: coordinator)
        let runner = try DistributedRunner(coordinator: coordinator, shards: members)
        let perTick = try await measureAsync(iterations: 200, rounds: 3) { n in blackHole(try await runner.run(n)) }
        // Where a tick's time goes: each phase's slowest shard, averaged over a sample of ticks.
        let sample = try await runner.run(50)
        await runner.shutdown()
        var slowest: [Phase: Double] = [:]
        for r in sample {
            for p in Phase.allCases {
                let worst = r.shards.compactMap { $0.phase(p)?.duration }.max() ?? .zero
                slowest[p, default: 0] += Double(worst.nanosecondsClamped) / 1e3 / Double(sample.count)
            }
        }
        reporter.note("colony, \(shards) shard(s): slowest shard per phase: sense \(fmt(slowest[.sense] ?? 0)) µs, "
                      + "act \(fmt(slowest[.act] ?? 0)) µs, decay \(fmt(slowest[.decay] ?? 0)) µs; "
                      + "\(sample.last?.crossShardEdges.count ?? 0) cross-shard edges in the last tick")
        let rate = 1 / perTick
        if oneShard == nil { oneShard = rate }
        reporter.report(BenchResult(suite: "runner", benchmark: "colony 4096 nodes, \(shards) shard\(shards == 1 ? "" : "s")",
                                    value: rate, unit: "ticks/s",
                                    baseline: shards == 1 ? nil : "1 shard", baselineValue: shards == 1 ? nil : oneShard,
                                    higherIsBetter: true))
    }

    try await runRemoteTickBenchmark(reporter)
}

/// The path of an executable built beside spindle-bench, if it exists.
private func siblingExecutable(_ name: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = exe.lastIndex(of: "/") else { return nil }
    let path = String(exe[..<slash]) + "/" + name
    return access(path, X_OK) == 0 ? path : nil
}

/// Remote tick latency: 4 `spindle-shard --model idle` processes over TCP loopback, against three
/// C libuv ping-pong round trips (a tick is three barrier rounds).
func runRemoteTickBenchmark(_ reporter: BenchReporter) async throws {
    guard let executable = siblingExecutable("spindle-shard") else {
        reporter.note("remote tick skipped: spindle-shard is not built beside spindle-bench "
                      + "(swift build -c release --product spindle-shard)")
        return
    }
    let loop = try EventLoop(name: "bench-shards")
    let transport = try TCPTransport(loopCount: 1)
    let coordinator = Coordinator()
    let listener = try await ShardServerListener.listen(on: .tcp(host: "127.0.0.1", port: 0), transport: transport,
                                                       hlc: coordinator.hlc)
    var children: [ChildProcess] = []
    defer { for c in children where c.exitStatus == nil { try? c.kill(SIGKILL) } }
    for i in 1...4 {
        var options = ProcessOptions(executable: executable, arguments: [
            "--coordinator", "\(listener.address)", "--shard", "\(i)", "--shards", "4", "--model", "idle"])
        options.stdin = .ignore
        options.stdout = .ignore
        options.stderr = .inherit
        options.parentDeathSignal = SIGKILL
        children.append(try await ChildProcess.spawn(on: loop, options))
    }
    let remotes = try await listener.waitForShards(count: 4, timeout: .seconds(60))
    let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) })

    // Interleave Spindle and C rounds so both see the same machine load.
    var ticks: [Double] = []
    var trips: [Double] = []
    _ = try await runner.run(200)
    for _ in 0..<5 {
        let t0 = SystemClock().now()
        blackHole(try await runner.run(500))
        ticks.append(Double((SystemClock().now() - t0).nanosecondsClamped) / 1e9 / 500)
        let ns = cbaselines_net_pingpong(2_000, 64)
        if ns > 0 { trips.append(Double(ns) / 1e9 / 2_000) }
    }
    await runner.shutdown()
    listener.shutdown()
    for c in children { _ = await c.wait() }
    await transport.shutdown()
    await loop.shutdown()
    ticks.sort()
    trips.sort()
    let tick = ticks[ticks.count / 2]
    let threeTrips = trips.isEmpty ? nil : 3 * trips[trips.count / 2]
    reporter.report(BenchResult(suite: "runner", benchmark: "remote tick, 4 shard procs, TCP loopback",
                                value: tick * 1e6, unit: "µs/tick",
                                baseline: threeTrips == nil ? nil : "3 C libuv RTTs",
                                baselineValue: threeTrips.map { $0 * 1e6 }, higherIsBetter: false))
}
