// spindle-bench tasklets: fork-join launch, data-lane barrier and a parallel sum, each beside
// its baseline in the same run (C pool / C barriers in CBaselines, DispatchQueue.concurrentPerform,
// a single-threaded loop).
import CBaselines
import Dispatch
import Spindle

let taskletsSuite = BenchSuite(name: "tasklets") { reporter in
    let pool = TaskletPool(configuration: .init(waitPolicy: benchSpin))
    do {
        try taskletOverheadBenchmarks(reporter, pool)
        try await taskletAsyncBenchmarks(reporter, pool)
        try taskletLaunchBenchmarks(reporter, pool)
        try taskletWorkPhaseBenchmarks(reporter, pool)
        try taskletBarrierBenchmarks(reporter, pool)
        try taskletSumBenchmarks(reporter, pool)
        try taskletParallelForBenchmarks(reporter, pool)
        try taskletReduceBenchmarks(reporter, pool)
    } catch {
        await pool.shutdown()
        throw error
    }
    await pool.shutdown()
}

/// The spin budget both Spindle and the C pool use in these benchmarks (the default policy).
private let benchSpin = WaitPolicy.default

private func micros(_ seconds: Double) -> Double { seconds * 1e6 }

/// A one-lane launch: the runtime's own cost, with no fork and no join.
private func taskletOverheadBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) throws {
    let spindle = try measure(iterations: 50_000) { n in
        for _ in 0..<n {
            blackHole(try pool.launch(workers: 1, shared: 0, scratch: { _ in 0 }) { try $0.parallelForWorkers { _ in } })
        }
    }
    reporter.report(BenchResult(suite: "tasklets", benchmark: "launch+join, 1 lane (no fork: runtime cost)",
                                value: micros(spindle), unit: "µs", higherIsBetter: false))
}

/// The async entry point (lane 0 on the runner thread, caller suspended) vs the blocking one.
private func taskletAsyncBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) async throws {
    let iterations = 5_000
    let blocking = try measure(iterations: iterations) { n in
        for _ in 0..<n {
            blackHole(try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { try $0.parallelForWorkers { _ in } })
        }
    }
    let suspended = try await measureAsync(iterations: iterations) { n in
        for _ in 0..<n {
            blackHole(try await pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { try $0.parallelForWorkers { _ in } })
        }
    }
    reporter.report(BenchResult(suite: "tasklets", benchmark: "async launch+empty phase+join, 2 lanes",
                                value: micros(suspended), unit: "µs", baseline: "blocking launch",
                                baselineValue: micros(blocking), higherIsBetter: false))
}

/// launch + empty phase + join at 2 and 4 lanes, vs the C pool and concurrentPerform.
private func taskletLaunchBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) throws {
    for lanes in [2, 4] {
        let iterations = lanes == 2 ? 10_000 : 3_000
        guard let cPool = cb_forkjoin_create(Int32(lanes), UInt64(benchSpin.spin.nanosecondsClamped)) else {
            throw TaskletBenchError("cb_forkjoin_create(\(lanes)) failed")
        }
        defer { cb_forkjoin_destroy(cPool) }
        let times = try interleaved(iterations: iterations, [
            { n in
                for _ in 0..<n {
                    blackHole(try pool.launch(workers: lanes, shared: 0, scratch: { _ in 0 }) { coord in
                        try coord.parallelForWorkers { _ in }
                    })
                }
            },
            { n in blackHole(cb_forkjoin_run_empty(cPool, n)) },
            { n in
                for _ in 0..<n { DispatchQueue.concurrentPerform(iterations: lanes) { blackHole($0) } }
            },
        ])
        reporter.report(BenchResult(suite: "tasklets", benchmark: "launch+empty phase+join, \(lanes) lanes",
                                    value: micros(times[0]), unit: "µs", baseline: "C spin-then-park pool",
                                    baselineValue: micros(times[1]), higherIsBetter: false))
        reporter.report(BenchResult(suite: "tasklets", benchmark: "launch+empty phase+join, \(lanes) lanes",
                                    value: micros(times[0]), unit: "µs", baseline: "concurrentPerform",
                                    baselineValue: micros(times[2]), higherIsBetter: false))
    }
}

/// A phase with real work (about 20 µs per lane on 2 lanes), vs concurrentPerform: here every
/// lane must run on its own core for the phase to take one body's time.
private func taskletWorkPhaseBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) throws {
    let iterations = 2_000
    let times = try interleaved(iterations: iterations, [
        { n in
            for _ in 0..<n {
                blackHole(try pool.launch(workers: 3, shared: 0, scratch: { _ in UInt64(0) }) { coord in
                    try coord.parallelForWorkers { w in w.scratch = busyWork(UInt64(w.lane)) }
                })
            }
        },
        { n in
            for _ in 0..<n { DispatchQueue.concurrentPerform(iterations: 2) { blackHole(busyWork(UInt64($0))) } }
        },
        { n in
            for i in 0..<n { blackHole(busyWork(UInt64(i))) }
        },
    ])
    reporter.report(BenchResult(suite: "tasklets", benchmark: "launch+phase of 2 × ~20 µs work+join",
                                value: micros(times[0]), unit: "µs", baseline: "concurrentPerform(2)",
                                baselineValue: micros(times[1]), higherIsBetter: false))
    reporter.report(BenchResult(suite: "tasklets", benchmark: "  (one body alone, for scale)",
                                value: micros(times[2]), unit: "µs", higherIsBetter: false))
}

/// About 20 µs of dependent integer work on this machine.
@inline(never)
private func busyWork(_ seed: UInt64) -> UInt64 {
    // xorshift: not affine, so the optimiser cannot fold the loop into a closed form.
    var x = seed | 1
    for _ in 0..<20_000 {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
    }
    return x
}

/// Barrier round trip with 2 data lanes, vs a C spin barrier and pthread_barrier_wait.
private func taskletBarrierBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) throws {
    let rounds = 100_000
    let times = try interleaved(iterations: rounds, [
        { n in
            blackHole(try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { coord in
                try coord.parallelForWorkers { w in
                    for _ in 0..<n { try w.barrier() }
                }
            })
        },
        { n in blackHole(cb_spin_barrier_roundtrip_ns(n)) },
    ])
    let blocking = median((0..<3).map { _ in cb_pthread_barrier_roundtrip_ns(2_000) })
    reporter.report(BenchResult(suite: "tasklets", benchmark: "barrier round trip, 2 data lanes",
                                value: times[0] * 1e9, unit: "ns", baseline: "C spin barrier",
                                baselineValue: times[1] * 1e9, higherIsBetter: false))
    reporter.report(BenchResult(suite: "tasklets", benchmark: "barrier round trip, 2 data lanes",
                                value: times[0] * 1e9, unit: "ns", baseline: "pthread_barrier_wait",
                                baselineValue: blocking, higherIsBetter: false))
}

/// Measures `bodies` in alternation (round r of each, then round r + 1 of each, …) so that the
/// load changes of a shared machine hit them alike; returns each body's median seconds per
/// iteration.
private func interleaved(iterations: Int, rounds: Int = 7, _ bodies: [(Int) throws -> Void]) throws -> [Double] {
    for body in bodies { try body(max(1, iterations / 10)) }
    var samples = Array(repeating: [Double](), count: bodies.count)
    for _ in 0..<rounds {
        for (index, body) in bodies.enumerated() {
            let t0 = SystemClock().now()
            try body(iterations)
            samples[index].append(Double((SystemClock().now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
        }
    }
    return samples.map(median)
}

/// Parallel sum of 64 M Int32 with a fuel checkpoint every 64 K, vs one thread and vs the same
/// kernel on two plain C pthreads (how far this machine's memory lets two cores go).
private func taskletSumBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) throws {
    let count = 64 << 20
    let chunk = 64 << 10
    let data = [Int32](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count { buffer[i] = Int32(truncatingIfNeeded: i & 0x3FF) }
        initialized = count
    }
    var expected: Int64 = 0
    let dataLanes = 2
    var got: Int64 = 0
    var cTotal: Int64 = 0
    var cFailed = false
    let times = try interleaved(iterations: 1, rounds: 5, [
        { _ in
            expected = data.withUnsafeBufferPointer { p in
                var total: Int64 = 0
                var start = 0
                while start < count {
                    total &+= sumChunk(p, start..<min(start + chunk, count))
                    start += chunk
                }
                return total
            }
            blackHole(expected)
        },
        { _ in
            let result = try pool.launch(workers: dataLanes + 1, shared: data, scratch: { _ in Int64(0) },
                                         fuel: .sharedPool(UInt64(count))) { coord in
                try coord.parallelForWorkers { w in
                    let per = (count / w.dataWorkerCount + chunk - 1) / chunk * chunk
                    let lo = w.dataIndex * per
                    let hi = min(lo + per, count)
                    var total: Int64 = 0
                    try w.shared.withUnsafeBufferPointer { p in
                        var start = lo
                        while start < hi {
                            let end = min(start + chunk, hi)
                            try w.fuelCheckpoint(UInt64(end - start))
                            total &+= sumChunk(p, start..<end)
                            start = end
                        }
                    }
                    w.scratch = total
                }
                let total = (0..<coord.dataWorkerCount).map { coord.dataScratch($0) }.reduce(0, &+)
                coord.setOutput(withUnsafeBytes(of: total.littleEndian) { Array($0) })
            }
            got = result.output.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }
            blackHole(result)
        },
        { _ in
            // The same kernel on two plain pthreads (no fuel): the machine's ceiling.
            let ns = data.withUnsafeBufferPointer { p in
                cb_parallel_sum_ns(p.baseAddress, count, Int32(dataLanes), &cTotal)
            }
            if ns == 0 { cFailed = true }
        },
    ])
    let single = times[0], spindle = times[1], cThreads = times[2]
    guard got == expected else { throw TaskletBenchError("parallel sum \(got) ≠ single-thread sum \(expected)") }
    guard !cFailed, cTotal == expected else { throw TaskletBenchError("C parallel sum \(cTotal) ≠ single-thread sum \(expected)") }
    reporter.report(BenchResult(suite: "tasklets", benchmark: "sum 64M Int32, fuel/64K, 2 data lanes",
                                value: spindle * 1e3, unit: "ms", baseline: "single thread",
                                baselineValue: single * 1e3, higherIsBetter: false))
    reporter.report(BenchResult(suite: "tasklets", benchmark: "  C, 2 pthreads (the machine's ceiling)",
                                value: cThreads * 1e3, unit: "ms", baseline: "single thread",
                                baselineValue: single * 1e3, higherIsBetter: false))
    reporter.report(BenchResult(suite: "tasklets", benchmark: "sum 64M Int32, fuel/64K, 2 data lanes",
                                value: spindle * 1e3, unit: "ms", baseline: "C, 2 pthreads",
                                baselineValue: cThreads * 1e3, higherIsBetter: false))
}

/// The front door's cheapest loop: `parallelFor` over two indices with an empty body on 2
/// lanes (the caller and one pool thread), vs `concurrentPerform(iterations: 2)`.
private func taskletParallelForBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) throws {
    let iterations = 10_000
    let times = try interleaved(iterations: iterations, [
        { n in
            for _ in 0..<n { try Tasklet.parallelFor(0..<2, lanes: 2, pool: pool) { blackHole($0) } }
        },
        { n in
            for _ in 0..<n { DispatchQueue.concurrentPerform(iterations: 2) { blackHole($0) } }
        },
    ])
    reporter.report(BenchResult(suite: "tasklets", benchmark: "parallelFor empty, 2 lanes",
                                value: micros(times[0]), unit: "µs", baseline: "concurrentPerform(2)",
                                baselineValue: micros(times[1]), higherIsBetter: false))
}

/// `parallelReduce` summing 64 M Int32 on 2 lanes (the caller and one pool thread, static
/// schedule), vs the same kernel on two plain C pthreads and in `concurrentPerform(2)`.
private func taskletReduceBenchmarks(_ reporter: BenchReporter, _ pool: TaskletPool) throws {
    let count = 64 << 20
    let data = [Int32](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count { buffer[i] = Int32(truncatingIfNeeded: (i &* 7) & 0x3FF) }
        initialized = count
    }
    let expected = data.withUnsafeBufferPointer { sumChunk($0, 0..<count) }
    var spindleTotal: Int64 = 0
    var cTotal: Int64 = 0
    var dispatchTotal: Int64 = 0
    var cFailed = false
    let partials = UnsafeMutablePointer<Int64>.allocate(capacity: 32)
    defer { partials.deallocate() }
    let times = try interleaved(iterations: 1, rounds: 7, [
        { _ in
            spindleTotal = try Tasklet.parallelReduce(0..<count, identity: Int64(0), combine: { $0 &+ $1 }, lanes: 2, pool: pool) { range in
                data.withUnsafeBufferPointer { sumChunk($0, range) }
            }
        },
        { _ in
            let ns = data.withUnsafeBufferPointer { p in cb_parallel_sum_ns(p.baseAddress, count, 2, &cTotal) }
            if ns == 0 { cFailed = true }
        },
        { _ in
            // Two iterations, one per half; partial sums 128 bytes apart (no shared line).
            let slots = UnsafeSendablePointer(partials)
            data.withUnsafeBufferPointer { p in
                let whole = UnsafeSendableBuffer(p)
                DispatchQueue.concurrentPerform(iterations: 2) { i in
                    slots.pointer[i * 16] = sumChunk(whole.buffer, (i * count / 2)..<((i + 1) * count / 2))
                }
            }
            dispatchTotal = partials[0] &+ partials[16]
        },
    ])
    guard spindleTotal == expected else { throw TaskletBenchError("parallelReduce sum \(spindleTotal) ≠ \(expected)") }
    guard !cFailed, cTotal == expected else { throw TaskletBenchError("C parallel sum \(cTotal) ≠ \(expected)") }
    guard dispatchTotal == expected else { throw TaskletBenchError("concurrentPerform sum \(dispatchTotal) ≠ \(expected)") }
    reporter.report(BenchResult(suite: "tasklets", benchmark: "parallelReduce sum 64M Int32",
                                value: times[0] * 1e3, unit: "ms", baseline: "C, 2 pthreads",
                                baselineValue: times[1] * 1e3, higherIsBetter: false))
    reporter.report(BenchResult(suite: "tasklets", benchmark: "parallelReduce sum 64M Int32",
                                value: times[0] * 1e3, unit: "ms", baseline: "concurrentPerform(2)",
                                baselineValue: times[2] * 1e3, higherIsBetter: false))
}

/// A pointer handed to `concurrentPerform`'s iterations, each of which writes its own slot.
private struct UnsafeSendablePointer: @unchecked Sendable {
    // @unchecked Sendable: each iteration writes a different element; the caller reads them
    // after concurrentPerform returned.
    let pointer: UnsafeMutablePointer<Int64>
    init(_ pointer: UnsafeMutablePointer<Int64>) { self.pointer = pointer }
}

/// Read-only data handed to `concurrentPerform`'s iterations.
private struct UnsafeSendableBuffer: @unchecked Sendable {
    // @unchecked Sendable: only read, while the array it points into is alive (the caller's
    // `withUnsafeBufferPointer` spans the whole concurrentPerform).
    let buffer: UnsafeBufferPointer<Int32>
    init(_ buffer: UnsafeBufferPointer<Int32>) { self.buffer = buffer }
}

@inline(never)
private func sumChunk(_ p: UnsafeBufferPointer<Int32>, _ range: Range<Int>) -> Int64 {
    var s: Int64 = 0
    for i in range { s &+= Int64(p[i]) }
    return s
}

private struct TaskletBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
