// The `runner` suite: tick latency and colony throughput of SpindleRunner, each beside its
// baseline in the same run (the tasklet barrier and a C spin barrier for the empty tick, the
// one-shard colony for the multi-shard colonies, C libuv round trips for remote ticks).
import CBaselines
import Spindle

#if canImport(Glibc)
import Glibc
#endif

//
// For profiling one part, SPINDLE_BENCH_RUNNER_PARTS selects parts (comma-separated: empty,
// colony, legacy, remote; default all) and SPINDLE_BENCH_COLONY_CASES the colony cases
// ("1 ranges,2 ranges"; default all eight).
let runnerSuite = BenchSuite(name: "runner") { reporter in
    let parts = environmentList("SPINDLE_BENCH_RUNNER_PARTS") ?? ["empty", "colony", "legacy", "remote"]
    if parts.contains("empty") { try await emptyTickBenchmark(reporter) }
    if parts.contains("tickonly") {
        let runner = try DistributedRunner(coordinator: Coordinator(), shards: (1...4).map { IdleShard(id: ShardID(UInt64($0))) })
        let t = try await measureAsync(iterations: 200_000, rounds: 5) { n in blackHole(try await runner.run(n)) }
        await runner.shutdown()
        reporter.note("empty tick only: \(fmt(t * 1e6)) µs")
    }
    if parts.contains("bookkeeping") { reporter.note("1-lane empty tick: \(fmt(try await oneLaneEmptyTick(ticks: 200_000) * 1e6)) µs") }
    if parts.contains("colony") { try await colonyScalingBenchmark(reporter, nodes: 262_144, agents: 65_536) }
    if parts.contains("legacy") { try await legacyColonyBenchmark(reporter) }
    if parts.contains("remote") { try await runRemoteTickBenchmark(reporter) }
}

private func environmentList(_ name: String) -> [String]? {
    guard let raw = getenv(name) else { return nil }
    return String(cString: raw).split(separator: ",").map { String($0) }
}

/// Empty-phase tick latency, 4 in-process idle shards on the default lanes (3 barrier rounds
/// per tick), interleaved with the tasklet pool's barrier round trip (2 data lanes) and a C
/// sense-reversing spin barrier (2 threads).
private func emptyTickBenchmark(_ reporter: BenchReporter) async throws {
    let runner = try DistributedRunner(coordinator: Coordinator(), shards: (1...4).map { IdleShard(id: ShardID(UInt64($0))) })
    let ticks = 20_000
    let barrierRounds = 100_000
    _ = try await runner.run(ticks / 10)
    // The barrier baseline gets a pool of its own: its 3-lane launches would leave the shared
    // pool with more threads than cores, which changes how every later wait on it yields.
    let barrierPool = TaskletPool()
    var tick: [Double] = [], barrier: [Double] = [], spin: [Double] = []
    let clock = SystemClock()
    for _ in 0..<7 {
        let t0 = clock.now()
        blackHole(try await runner.run(ticks))
        tick.append(Double((clock.now() - t0).nanosecondsClamped) / Double(ticks))
        barrier.append(try taskletBarrierRoundTrip(rounds: barrierRounds, pool: barrierPool))
        spin.append(cb_spin_barrier_roundtrip_ns(barrierRounds))
    }
    await runner.shutdown()
    await barrierPool.shutdown()
    // The runner's own bookkeeping per tick: the same ticks on one lane (no fork, no join).
    let bookkeeping = try await oneLaneEmptyTick(ticks: ticks)
    reporter.note("empty tick on 1 lane (the runner's bookkeeping, no fork/join): \(fmt(bookkeeping * 1e6)) µs/tick")
    let perTick = median(tick) / 1e3
    reporter.report(BenchResult(suite: "runner", benchmark: "empty tick, 4 in-process shards", value: perTick,
                                unit: "µs/tick", baseline: "tasklet barrier RTT", baselineValue: median(barrier) / 1e3,
                                higherIsBetter: false))
    reporter.report(BenchResult(suite: "runner", benchmark: "empty tick, 4 in-process shards", value: perTick,
                                unit: "µs/tick", baseline: "C spin barrier RTT", baselineValue: median(spin) / 1e3,
                                higherIsBetter: false))
    reporter.note("empty tick target ≤ 3 µs: \(perTick <= 3 ? "met" : "missed") (\(fmt(perTick)) µs, \(Tasklet.defaultLanes) lanes)")
}

/// Nanoseconds per round of the tasklet pool's barrier among 2 data lanes (from a blocking
/// launch on the calling thread, like the tasklets suite).
private func taskletBarrierRoundTrip(rounds: Int, pool: TaskletPool) throws -> Double {
    let clock = SystemClock()
    let t0 = clock.now()
    blackHole(try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { coord in
        try coord.parallelForWorkers { w in
            for _ in 0..<rounds { try w.barrier() }
        }
    })
    return Double((clock.now() - t0).nanosecondsClamped) / Double(rounds)
}

/// Seconds per empty tick of 4 idle shards on one lane.
private func oneLaneEmptyTick(ticks: Int) async throws -> Double {
    let oneLane = try DistributedRunner(coordinator: Coordinator(), shards: (1...4).map { IdleShard(id: ShardID(UInt64($0))) },
                                        configuration: RunnerConfiguration(parallelism: 1))
    let perTick = try await measureAsync(iterations: ticks, rounds: 5) { n in blackHole(try await oneLane.run(n)) }
    await oneLane.shutdown()
    return perTick
}

/// One colony configuration of the scaling rows.
private struct ColonyCase {
    var shards: Int
    var placement: String
    var runner: DistributedRunner
    var samples: [Double] = []
    /// Process CPU seconds per tick.
    var cpu: [Double] = []
}

private func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Colony throughput for 1, 2, 4 and 8 in-process shards, placed by contiguous ranges
/// (locality) and by consistent hashing, measured in interleaved rounds; the 1-shard row is
/// the baseline.
private func colonyScalingBenchmark(_ reporter: BenchReporter, nodes: Int, agents: Int) async throws {
    let colony = ColonyConfiguration(seed: 42, nodeCount: nodes, agentCount: agents)
    var cases: [ColonyCase] = []
    let selected = environmentList("SPINDLE_BENCH_COLONY_CASES")
    for placement in ["ranges", "hashed"] {
        for shards in [1, 2, 4, 8] where selected?.contains("\(shards) \(placement)") ?? true {
            let strategy: PlacementStrategy = placement == "ranges" ? colony.localityPlacement : .consistentHashing
            let coordinator = Coordinator()
            let members = try ColonyShard.makeShards(count: shards, configuration: colony, coordinator: coordinator,
                                                     placement: strategy)
            let runner = try DistributedRunner(coordinator: coordinator, shards: members,
                                               configuration: RunnerConfiguration(placement: strategy))
            _ = try await runner.run(3)
            cases.append(ColonyCase(shards: shards, placement: placement, runner: runner))
        }
    }
    let ticksPerRound = 8
    let clock = SystemClock()
    var phases: [String: [Phase: Double]] = [:]
    var edges: [String: Int] = [:]
    for _ in 0..<5 {
        for i in cases.indices {
            let t0 = clock.now()
            let c0 = processCPUSeconds()
            let results = try await cases[i].runner.run(ticksPerRound)
            cases[i].samples.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(ticksPerRound))
            cases[i].cpu.append((processCPUSeconds() - c0) / Double(ticksPerRound))
            let key = "\(cases[i].shards) \(cases[i].placement)"
            var slowest: [Phase: Double] = [:]
            for r in results {
                for p in Phase.allCases {
                    let worst = r.shards.compactMap { $0.phase(p)?.duration }.max() ?? .zero
                    slowest[p, default: 0] += Double(worst.nanosecondsClamped) / 1e6 / Double(results.count)
                }
            }
            phases[key] = slowest
            edges[key] = results.last?.crossShardEdges.count ?? 0
        }
    }
    for c in cases { await c.runner.shutdown() }
    for placement in ["ranges", "hashed"] {
        let rows = cases.filter { $0.placement == placement }
        guard let first = rows.first else { continue }
        let base = 1 / median(first.samples)
        for c in rows {
            let rate = 1 / median(c.samples)
            let key = "\(c.shards) \(c.placement)"
            let p = phases[key] ?? [:]
            reporter.note("colony \(nodes), \(c.shards) shard(s), \(placement): \(fmt(median(c.samples) * 1e3)) ms/tick, CPU \(fmt(median(c.cpu) * 1e3)) ms/tick; slowest shard per phase sense \(fmt(p[.sense] ?? 0)) ms, "
                          + "act \(fmt(p[.act] ?? 0)) ms, decay \(fmt(p[.decay] ?? 0)) ms; \(edges[key] ?? 0) cross-shard edges in a tick")
            reporter.report(BenchResult(suite: "runner", benchmark: "colony \(nodes) nodes, \(c.shards) shard\(c.shards == 1 ? "" : "s"), \(placement)",
                                        value: rate, unit: "ticks/s",
                                        baseline: c.shards == 1 ? nil : "1 shard", baselineValue: c.shards == 1 ? nil : base,
                                        higherIsBetter: true))
        }
    }
}

/// The 4 096-node rows of earlier runs (consistent hashing, 1 024 agents), for continuity.
private func legacyColonyBenchmark(_ reporter: BenchReporter) async throws {
    let colony = ColonyConfiguration(seed: 42, nodeCount: 4_096, agentCount: 1_024)
    var oneShard: Double? = nil
    for shards in [1, 2, 4] {
        let coordinator = Coordinator()
        let members = try ColonyShard.makeShards(count: shards, configuration: colony, coordinator: coordinator)
        let runner = try DistributedRunner(coordinator: coordinator, shards: members)
        let perTick = try await measureAsync(iterations: 200, rounds: 5) { n in blackHole(try await runner.run(n)) }
        await runner.shutdown()
        let rate = 1 / perTick
        if oneShard == nil { oneShard = rate }
        reporter.report(BenchResult(suite: "runner", benchmark: "colony 4096 nodes, \(shards) shard\(shards == 1 ? "" : "s")",
                                    value: rate, unit: "ticks/s",
                                    baseline: shards == 1 ? nil : "1 shard", baselineValue: shards == 1 ? nil : oneShard,
                                    higherIsBetter: true))
    }
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
