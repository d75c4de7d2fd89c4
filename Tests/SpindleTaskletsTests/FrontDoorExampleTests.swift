import SpindleTasklets
import Synchronization
import Testing

extension TaskletTests {
    /// The front-door example of docs/tasklets.md and the README, line for line, with the
    /// values, files and helpers it assumes.
    @Suite struct FrontDoorExample {
        struct Compressed: Error {}
        static let compressed = Mutex<Set<String>>([])
        static let rendered = Mutex<Set<Int>>([])
        static func compress(_ file: String) throws { compressed.withLock { _ = $0.insert(file) } }
        static func render(row: Int) { rendered.withLock { _ = $0.insert(row) } }

        @Test func theDocumentedLinesRunAndAgreeWithSerialCode() throws {
            let values = (0..<100_000).map { $0 % 97 }
            let files = (0..<50).map { "file-\($0)" }
            let rows = 20_000
            @Sendable func compress(_ file: String) throws { try Self.compress(file) }
            @Sendable func render(row: Int) { Self.render(row: row) }

            // --- docs/tasklets.md begins ---
            // A parallel sum: every lane (the calling thread is one) folds its chunk; results combine.
            let sum = try Tasklet.parallelReduce(0..<values.count, identity: 0, combine: +) { chunk in
                values[chunk].reduce(0, +)
            }

            // A loop over indices; lanes take one contiguous block each (.static, the default) …
            try Tasklet.parallelFor(0..<files.count) { i in try compress(files[i]) }

            // … or claim chunks of 4 096 indices from an atomic counter (uneven work).
            try Tasklet.parallelFor(chunksOf: 0..<rows, schedule: .dynamic(grain: 4_096)) { chunk in
                for row in chunk { render(row: row) }
            }

            // A launch that returns a value: no shared value or scratch needed.
            let lanes = try Tasklet.launch { coord in coord.workerCount }
            // --- docs/tasklets.md ends ---

            #expect(sum == values.reduce(0, +))
            #expect(Self.compressed.withLock { $0 } == Set(files))
            #expect(Self.rendered.withLock { $0 } == Set(0..<rows))
            #expect(lanes == Tasklet.defaultLanes)
        }
    }
}
