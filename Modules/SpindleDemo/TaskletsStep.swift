import Spindle
import Synchronization

/// Input of the tasklet step: the numbers to add, shared read-only by every lane.
final class SumJob: Sendable {
    let values: [Int32]
    let chunksDone = Atomic<Int>(0)
    init(values: [Int32]) { self.values = values }
}

/// Adds 4 M numbers on 3 lanes (coordinator + 2 data lanes) with fuel checkpoints.
func taskletsStep(_ log: DemoLog) async throws -> String {
    let count = 4 << 20
    let job = SumJob(values: (0..<count).map { Int32(truncatingIfNeeded: $0 &* 2_654_435_761) & 0xFFFF })
    let expected = job.values.reduce(Int64(0)) { $0 + Int64($1) }
    let result = try await Tasklet.launch(workers: 3, shared: job, scratch: { @Sendable _ in Int64(0) },
                                          fuel: .sharedPool(UInt64(count))) { @Sendable coord in
        try coord.parallelForWorkers { @Sendable w in
            let n = w.shared.values.count
            let lo = w.dataIndex * n / w.dataWorkerCount
            let hi = (w.dataIndex + 1) * n / w.dataWorkerCount
            var start = lo
            while start < hi {
                let end = min(start + 65_536, hi)
                try w.fuelCheckpoint(UInt64(end - start))
                var s = Int64(0)
                for i in start..<end { s += Int64(w.shared.values[i]) }
                w.scratch += s
                w.shared.chunksDone.add(1, ordering: .relaxed)
                start = end
            }
        }
        let total = (0..<coord.dataWorkerCount).map { coord.dataScratch($0) }.reduce(0, +)
        coord.setOutput(withUnsafeBytes(of: total.littleEndian) { Array($0) })
    }
    let total = result.output.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }
    log.say("sum of \(count) numbers on 2 data lanes = \(total) (fuel used \(result.fuelUsed), \(job.chunksDone.load(ordering: .relaxed)) chunks)")
    guard total == expected else {
        throw DemoError("tasklet sum \(total) differs from the sequential sum \(expected)")
    }
    return "parallel sum matches (\(total))"
}

/// A demo step that found a wrong result.
struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
