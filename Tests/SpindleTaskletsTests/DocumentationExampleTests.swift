import SpindleTasklets
import Synchronization
import Testing

extension TaskletTests {
    /// The worked example of docs/tasklets.md, kept compiling and correct.
    @Suite struct DocumentationExample {
        final class Job: Sendable {
            let values: [Int32]
            let done = Atomic<Int>(0)
            init(values: [Int32]) { self.values = values }
        }

        @Test func parallelSumWithFuelAndProgress() throws {
            let job = Job(values: (0..<1_000_000).map { Int32($0 & 0xFF) })
            let result = try Tasklet.launch(workers: 3, shared: job, scratch: { _ in Int64(0) },
                                            fuel: .sharedPool(2_000_000)) { coord in
                try coord.parallelForWorkers { w in
                    let n = w.shared.values.count
                    let lo = w.dataIndex * n / w.dataWorkerCount, hi = (w.dataIndex + 1) * n / w.dataWorkerCount
                    var start = lo
                    while start < hi {
                        let end = min(start + 65_536, hi)
                        try w.fuelCheckpoint(UInt64(end - start))
                        for i in start..<end { w.scratch += Int64(w.shared.values[i]) }
                        w.shared.done.add(end - start, ordering: .relaxed)
                        start = end
                    }
                }
                let total = (0..<coord.dataWorkerCount).map { coord.dataScratch($0) }.reduce(0, +)
                coord.setOutput(withUnsafeBytes(of: total.littleEndian) { Array($0) })
            }
            let sum = result.output.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
            #expect(sum == job.values.reduce(Int64(0)) { $0 + Int64($1) })
            #expect(result.fuelUsed == 1_000_000)
            #expect(job.done.load(ordering: .relaxed) == 1_000_000)
        }

        @Test func asyncEntryPoint() async throws {
            let job = Job(values: Array(repeating: 2, count: 10_000))
            let result = try await Tasklet.launch(workers: 3, shared: job, scratch: { _ in Int64(0) }) { coord in
                try coord.parallelForWorkers { w in
                    let n = w.shared.values.count
                    for i in stride(from: w.dataIndex, to: n, by: w.dataWorkerCount) { w.scratch += Int64(w.shared.values[i]) }
                }
                coord.setOutput([UInt8(truncatingIfNeeded: (coord.dataScratch(0) + coord.dataScratch(1)) / 1_000)])
            }
            #expect(result.output == [20])
        }
    }
}
