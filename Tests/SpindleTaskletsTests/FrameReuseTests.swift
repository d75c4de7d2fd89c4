import SpindleTasklets
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The pool reuses one launch frame, one order and report line per lane and the previous
/// result's buffer: these tests prove nothing leaks from one launch into the next.
extension TaskletTests {
    @Suite struct FrameReuse {
        @Test func aResultKeptAcrossLaunchesKeepsItsFigures() async throws {
            try await withPool { pool in
                let first = try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }, fuel: .perLane(300)) { coord in
                    try coord.parallelForWorkers { w in try w.fuelCheckpoint(UInt64(10 * w.lane)) }
                    try coord.fuelCheckpoint(7)
                }
                let second = try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }, fuel: .sharedPool(1_000)) { coord in
                    try coord.parallelForWorkers { w in try w.fuelCheckpoint(UInt64(100 * w.lane)) }
                }
                #expect(first.laneFuelUsed == [7, 10, 20])
                #expect(first.fuelUsed == 37)
                #expect(second.laneFuelUsed == [0, 100, 200])
                #expect(second.fuelUsed == 300)
            }
        }

        @Test func launchesWithoutPhasesReportNoDataLaneWork() async throws {
            try await withPool { pool in
                _ = try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { coord in
                    try coord.parallelForWorkers { w in try w.fuelCheckpoint(5) }
                }
                let idle = try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { _ in }
                #expect(idle.laneFuelUsed == [0, 0, 0])
                #expect(idle.laneBusyTime[1] == .zero && idle.laneBusyTime[2] == .zero)
            }
        }

        struct Wide: Sendable, Equatable {
            // 312 bytes: more than a scratch slot's default 128, so the slots widen their stride.
            var words = [UInt64](repeating: 0, count: 4)
            var inline: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                         UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                         UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                         UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                         UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
                = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            static func == (a: Wide, b: Wide) -> Bool { a.words == b.words && a.inline.37 == b.inline.37 }
        }

        @Test func launchesOfDifferentTypesInTurnEachSeeTheirOwnScratch() async throws {
            try await withPool { pool in
                for round in 0..<3 {
                    let ints = try pool.launch(workers: 4, shared: round, scratch: { $0 * 1_000 }) { coord in
                        try coord.parallelForWorkers { w in w.scratch += w.shared + w.lane }
                        coord.setOutput((0..<3).map { UInt8(truncatingIfNeeded: coord.dataScratch($0)) })
                    }
                    #expect(ints.output == (1...3).map { UInt8(truncatingIfNeeded: $0 * 1_000 + round + $0) })

                    let strings = try pool.launch(workers: 3, shared: "r\(round)", scratch: { "lane\($0)" }) { coord in
                        try coord.parallelForWorkers { w in w.scratch += "-" + w.shared }
                        #expect(coord.scratch(0) == "lane0")
                        #expect((0..<2).map { coord.dataScratch($0) } == ["lane1-r\(round)", "lane2-r\(round)"])
                    }
                    #expect(strings.workerCount == 3)

                    let wide = try pool.launch(workers: 6, shared: UInt64(round), scratch: { _ in Wide() }) { coord in
                        try coord.parallelForWorkers { w in
                            w.scratch.words[w.dataIndex % 4] = UInt64(w.lane) + w.shared
                            w.scratch.inline.37 = UInt64(w.lane) * 7
                        }
                        for lane in 1..<6 {
                            var expected = Wide()
                            expected.words[(lane - 1) % 4] = UInt64(lane) + UInt64(round)
                            expected.inline.37 = UInt64(lane) * 7
                            #expect(coord.scratch(lane) == expected)
                        }
                    }
                    #expect(wide.workerCount == 6)
                }
            }
        }

        @Test func anEscapedContextCannotCancelTheNextLaunch() async throws {
            try await withPool { pool in
                let escaped = EscapedCancel()
                _ = try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { coord in
                    escaped.cancel = { coord.cancel() }
                }
                let result = try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { coord in
                    escaped.cancel?()
                    #expect(!coord.isCancelled)
                    try coord.parallelForWorkers { w in w.scratch = 1 }
                    coord.setOutput([UInt8(coord.dataScratch(0))])
                }
                #expect(result.output == [1])
            }
        }

        @Test func busyTimesAreInNanosecondsWhicheverClockThePoolReads() async throws {
            // A body that takes at least 5 ms of wall time (the sleep is the workload, not a
            // synchronisation): a pool that times lanes in CPU cycles must still report ≥ 5 ms.
            try await withPool { pool in
                let result = try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { coord in
                    try coord.parallelForWorkers { _ in usleep(5_000) }
                }
                #expect(result.laneBusyTime[1] >= .milliseconds(5))
                #expect(result.laneBusyTime[1] <= result.elapsed)
                #expect(result.elapsed < .seconds(5))
            }
        }

        @Test func parkedLanesCountOnlyTheirBodiesAsBusy() async throws {
            // Passive lanes park between phases: their busy time starts when they wake.
            try await withPool(.init(waitPolicy: .passive)) { pool in
                let result = try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { coord in
                    for _ in 0..<20 {
                        try coord.parallelForWorkers { w in
                            var x = 0
                            for i in 0..<20_000 { x &+= i &* w.lane }
                            w.scratch = x
                        }
                    }
                }
                #expect(result.laneBusyTime[1] > .zero && result.laneBusyTime[2] > .zero)
                #expect(result.laneBusyTime[1] <= result.elapsed && result.laneBusyTime[2] <= result.elapsed)
            }
        }
    }
}

/// Runs `body` with a fresh pool and shuts the pool down afterwards, whatever `body` did.
func withPool(_ configuration: TaskletPool.Configuration = .init(),
              _ body: (TaskletPool) throws -> Void) async throws {
    let pool = TaskletPool(configuration: configuration)
    do {
        try body(pool)
    } catch {
        await pool.shutdown()
        throw error
    }
    await pool.shutdown()
}

/// Carries an escaped coordinator's `cancel` out of its launch (one test thread only).
final class EscapedCancel: @unchecked Sendable {
    // @unchecked Sendable: written inside one launch and called in the next, on one thread.
    var cancel: (() -> Void)?
}
