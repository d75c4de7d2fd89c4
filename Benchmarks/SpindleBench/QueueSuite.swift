// `spindle-bench queue`: no-op tasks through the task queue, thread and process workers,
// beside Python's concurrent.futures.ProcessPoolExecutor(2) doing the same work.
import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A no-op task kind: the worker returns the number it gets.
///
/// The master counts answers in an atomic, and, for the latency chain, answers each task by
/// injecting the next one (`.stay(_, inject:)`), so one task follows another with no thread
/// of the benchmark in between.
struct NoopKind: TaskKind {
    typealias Task = Int
    typealias Competence = Int
    typealias Request = Int
    typealias Response = Int

    static var name: String { "bench-noop" }

    let probe: NoopProbe

    func request(for task: Int, status: WorkerStatus<Int>) -> Int? { task }

    func use(_ response: Int, for task: Int, status: WorkerStatus<Int>) -> ResponseDecision<Int, Int> {
        probe.answered.add(1, ordering: .relaxed)
        if response > 0 && response < probe.chainLength.load(ordering: .relaxed) {
            return .stay(0, inject: [response + 1])
        }
        return .stay(0, inject: [])
    }

    func cancelledExpiredOrWorkerDied(_ task: Int?, reason: TaskFailure) {
        probe.failed.add(1, ordering: .relaxed)
    }

    static func perform(_ request: Int, context: PerformContext<NoFeedback>) -> Int { request }
}

final class NoopProbe: Sendable {
    let answered = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    /// Tasks numbered 1…chainLength inject their successor.
    let chainLength = Atomic<Int>(0)
}

/// The front door's no-op job: returns its input.
struct NoopJob: ProcessJob {
    static var name: String { "bench-noop-job" }
    static func run(_ x: Int) -> Int { x }
}

/// The task kinds and jobs `spindle-bench` serves when the process backend re-enters it as a
/// worker (main.swift calls `ProcessWorkerMain.runIfWorker(kinds:jobs:)` first thing).
let benchWorkerKinds: [any TaskKind.Type] = [NoopKind.self]
let benchWorkerJobs: [any ProcessJob.Type] = [NoopJob.self]

/// The suite.
let queueSuite: BenchSuite = {
    return BenchSuite(name: "queue") { reporter in
        let python = pythonBaseline(tasks: 20_000, roundTrips: 300)
        if python == nil { reporter.note("python3 baseline: skipped (python3 or the script not found)") }

        // Thread workers.
        let threadRate = try await throughput(workers: 2, prefetch: 1024, tasks: 2_000_000, rounds: 3, process: false)
        reporter.report(BenchResult(suite: "queue", benchmark: "thread workers ×2: no-op tasks/s",
                                    value: threadRate, unit: "tasks/s", higherIsBetter: true))
        let threadLatency = try await chainLatency(process: false, length: 20_000)
        reporter.report(BenchResult(suite: "queue", benchmark: "thread worker: 1-task round trip",
                                    value: threadLatency * 1e6, unit: "µs", higherIsBetter: false))

        // Process workers.
        let procRate = try await throughput(workers: 2, prefetch: 128, tasks: 200_000, rounds: 3, process: true)
        reporter.report(BenchResult(suite: "queue", benchmark: "process workers ×2: no-op tasks/s",
                                    value: procRate, unit: "tasks/s",
                                    baseline: python == nil ? "python skipped" : "ProcessPool(2) chunk 1",
                                    baselineValue: python?.rate, higherIsBetter: true))
        let procLatency = try await chainLatency(process: true, length: 3_000)
        reporter.report(BenchResult(suite: "queue", benchmark: "process worker: 1-task round trip",
                                    value: procLatency * 1e6, unit: "µs",
                                    baseline: python == nil ? "python skipped" : "ProcessPool submit+result",
                                    baselineValue: python?.latencyMicros, higherIsBetter: false))
        let procExternal = try await externalLatency(roundTrips: 2_000)
        reporter.report(BenchResult(suite: "queue", benchmark: "process worker: enqueue→answer from a thread",
                                    value: procExternal * 1e6, unit: "µs",
                                    baseline: python == nil ? "python skipped" : "ProcessPool submit+result",
                                    baselineValue: python?.latencyMicros, higherIsBetter: false))

        // The front door: ProcessJob, map and handles.
        let mapRate = try await mapThroughput(tasks: 200_000, rounds: 3)
        reporter.report(BenchResult(suite: "queue", benchmark: "process workers ×2: map of no-op jobs/s",
                                    value: mapRate, unit: "jobs/s",
                                    baseline: python == nil ? "python skipped" : "ProcessPool(2).map chunk 1",
                                    baselineValue: python?.rate, higherIsBetter: true))
        let handleLatency = try await handleRoundTrip(roundTrips: 2_000)
        reporter.reportLatency(suite: "queue", benchmark: "process worker: handle round trip", handleLatency,
                               baseline: python.map { ("ProcessPool submit+result", $0.latencyMicros, $0.latencyP99Micros) })
    }
}()

/// A queue of no-op workers, threads or processes of this executable.
private func makeQueue(workers: Int, prefetch: Int, process: Bool, probe: NoopProbe) async throws -> TaskQueue<NoopKind> {
    var config = TaskQueue<NoopKind>.Configuration(workers: workers)
    config.prefetch = prefetch
    config.limit = 1 << 24
    if process {
        let backend = try ProcessWorkerBackend<NoopKind>()
        return try await TaskQueue(kind: NoopKind(probe: probe), backend: backend, configuration: config)
    }
    return try await TaskQueue(kind: NoopKind(probe: probe), configuration: config)
}

/// Tasks per second: enqueue `tasks` no-op tasks in one batch and join; best of `rounds`.
private func throughput(workers: Int, prefetch: Int, tasks: Int, rounds: Int, process: Bool) async throws -> Double {
    let probe = NoopProbe()
    let queue = try await makeQueue(workers: workers, prefetch: prefetch, process: process, probe: probe)
    defer { blackHole(probe.answered.load(ordering: .relaxed)) }
    let batch = Array(repeating: 0, count: tasks)
    try await queue.enqueue(contentsOf: batch.prefix(tasks / 10))  // warm-up, starts the workers
    await queue.join()
    var best = 0.0
    for _ in 0..<rounds {
        let before = probe.answered.load(ordering: .relaxed)
        let t0 = SystemClock().now()
        try await queue.enqueue(contentsOf: batch)
        await queue.join()
        let dt = Double((SystemClock().now() - t0).nanosecondsClamped) / 1e9
        precondition(probe.answered.load(ordering: .relaxed) - before == tasks, "tasks were lost")
        best = max(best, Double(tasks) / dt)
    }
    await queue.shutdown()
    return best
}

/// Seconds per task when each answer injects the next task: a chain of `length` dependent
/// round trips with nothing outside the queue in the loop. Median of 3 chains.
private func chainLatency(process: Bool, length: Int) async throws -> Double {
    let probe = NoopProbe()
    let queue = try await makeQueue(workers: 1, prefetch: 1, process: process, probe: probe)
    probe.chainLength.store(length, ordering: .relaxed)
    try await queue.enqueue(0)
    await queue.join()
    let perTask = try await measureAsync(iterations: length, rounds: 3, warmup: 1) { n in
        try await queue.enqueue(1)
        await queue.join()
    }
    await queue.shutdown()
    return perTask
}

/// Seconds from `enqueue` on a benchmark task until the answer has been used, one task at a
/// time (the benchmark spins on the answer counter rather than parking). Median of rounds.
private func externalLatency(roundTrips: Int) async throws -> Double {
    let probe = NoopProbe()
    let queue = try await makeQueue(workers: 1, prefetch: 1, process: true, probe: probe)
    try await queue.enqueue(0)
    await queue.join()
    var samples: [Double] = []
    samples.reserveCapacity(roundTrips)
    for _ in 0..<roundTrips {
        let before = probe.answered.load(ordering: .relaxed)
        let t0 = SystemClock().now()
        try queue.tryEnqueue(0)
        while probe.answered.load(ordering: .relaxed) == before {}
        samples.append(Double((SystemClock().now() - t0).nanosecondsClamped) / 1e9)
    }
    await queue.shutdown()
    return median(samples)
}

/// Jobs per second through `queue.map` on two worker processes (the front door's defaults):
/// best of `rounds` maps of `tasks` no-op jobs, every result checked.
private func mapThroughput(tasks: Int, rounds: Int) async throws -> Double {
    let queue = try await TaskQueue(processWorkersFor: NoopJob.self, workers: 2)
    _ = try await queue.map(0..<(tasks / 10))  // warm-up, starts the workers
    var best = 0.0
    for _ in 0..<rounds {
        let t0 = SystemClock().now()
        let results = try await queue.map(0..<tasks)
        let dt = Double((SystemClock().now() - t0).nanosecondsClamped) / 1e9
        var expected = 0
        for result in results {
            guard case .success(let x) = result, x == expected else {
                throw QueueBenchError("map result \(expected) is \(result)")
            }
            expected += 1
        }
        best = max(best, Double(tasks) / dt)
    }
    await queue.shutdown()
    return best
}

/// Each `enqueue` to `await handle.value` of one no-op job at a time on one worker process,
/// from a Swift task.
private func handleRoundTrip(roundTrips: Int) async throws -> Latencies {
    let queue = try await TaskQueue(processWorkersFor: NoopJob.self, workers: 1)
    for i in 0..<100 { _ = try await queue.enqueue(i).value }
    var latencies = Latencies()
    let clock = SystemClock()
    for i in 0..<roundTrips {
        let t0 = clock.now()
        let value = try await queue.enqueue(i).value
        latencies.record(clock.now() - t0)
        if value != i { throw QueueBenchError("round trip \(i) answered \(value)") }
    }
    await queue.shutdown()
    return latencies
}

private struct QueueBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs Benchmarks/queue_baseline.py; nil when python3 or the script is missing.
private func pythonBaseline(tasks: Int, roundTrips: Int) -> (rate: Double, latencyMicros: Double, latencyP99Micros: Double)? {
    let source = "\(#filePath)"
    guard let slash = source.lastIndex(of: "/") else { return nil }
    let benchDir = String(source[..<slash])  // Benchmarks/SpindleBench
    let script = String(benchDir[..<(benchDir.lastIndex(of: "/") ?? benchDir.endIndex)]) + "/queue_baseline.py"
    guard access(script, R_OK) == 0 else { return nil }
    guard let pipe = popen("python3 '\(script)' \(tasks) \(roundTrips) 2>/dev/null", "r") else { return nil }
    var output = ""
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), pipe) != nil {
        output += String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    guard pclose(pipe) == 0 else { return nil }
    guard let rate = number(after: "\"tasks_per_s\":", in: output),
          let latency = number(after: "\"latency_us\":", in: output),
          let p99 = number(after: "\"latency_p99_us\":", in: output) else { return nil }
    return (rate, latency, p99)
}

private func number(after key: String, in text: String) -> Double? {
    guard let r = text.range(of: key) else { return nil }
    let tail = text[r.upperBound...].drop { $0 == " " }
    return Double(tail.prefix { "0123456789.eE+-".contains($0) })
}
