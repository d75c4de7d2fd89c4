import SpindleTasklets
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension TaskletTests {
    @Suite struct Launch {
        struct Partial: Sendable { var sum = 0; var lane = -1 }

        @Test(arguments: [2, 3, 4, 6])
        func disjointScratchWritesAreVisibleAfterThePhase(workers: Int) throws {
            let result = try Tasklet.launch(workers: workers, shared: Counters(), scratch: { _ in Partial() }) { coord in
                #expect(coord.dataWorkerCount == workers - 1)
                try coord.parallelForWorkers { w in
                    var sum = 0
                    for i in 0..<10_000 where i % w.dataWorkerCount == w.dataIndex { sum += i }
                    w.scratch.sum = sum
                    w.scratch.lane = w.lane
                }
                let lanes = (0..<coord.dataWorkerCount).map { coord.dataScratch($0).lane }
                #expect(lanes == Array(1..<workers))
                let total = (0..<coord.dataWorkerCount).map { coord.dataScratch($0).sum }.reduce(0, +)
                #expect(coord.scratch(0).lane == -1)
                coord.setOutput(withUnsafeBytes(of: total.littleEndian) { Array($0) })
            }
            let total = result.output.withUnsafeBytes { $0.loadUnaligned(as: Int.self) }
            #expect(total == (0..<10_000).reduce(0, +))
            #expect(result.workerCount == workers)
        }

        @Test func severalPhasesSeeEarlierPhasesWrites() throws {
            _ = try Tasklet.launch(workers: 4, shared: Counters(), scratch: { _ in Partial() }) { coord in
                try coord.parallelForWorkers { w in w.scratch.sum = w.lane * 10 }
                try coord.barrier()
                coord.withScratch(2) { $0.sum += 1 }
                try coord.parallelForWorkers { w in w.scratch.sum += 1 }
                #expect((0..<3).map { coord.dataScratch($0).sum } == [11, 22, 31])
            }
        }

        @Test func oneLaneRunsNoDataWorkers() throws {
            let counters = Counters()
            let result = try Tasklet.launch(workers: 1, shared: counters, scratch: { _ in 0 }) { coord in
                #expect(coord.workerCount == 1 && coord.dataWorkerCount == 0)
                try coord.parallelForWorkers { w in w.shared.started.add(1, ordering: .relaxed) }
                coord.setOutput([7])
            }
            #expect(counters.started.load(ordering: .relaxed) == 0)
            #expect(result.output == [7])
            #expect(result.laneBusyTime.count == 1)
        }

        @Test(arguments: [0, -3])
        func nonPositiveLaneCountIsInvalid(workers: Int) {
            let ran = Atomic<Bool>(false)
            #expect {
                _ = try Tasklet.launch(workers: workers, shared: 0, scratch: { _ in 0 }) { _ in ran.store(true, ordering: .relaxed) }
            } throws: { error in
                guard case .invalidConfiguration(let why) = error as? TaskletError else { return false }
                return why.contains("\(workers)")
            }
            let ran2 = ran.load(ordering: .relaxed)
            #expect(!ran2)
        }

        @Test func moreLanesThanThePoolAllowsIsInvalid() async {
            let pool = TaskletPool(configuration: .init(maxLanes: 3))
            #expect {
                _ = try blocking { try pool.launch(workers: 4, shared: 0, scratch: { _ in 0 }) { _ in } }
            } throws: { error in
                guard case .invalidConfiguration(let why) = error as? TaskletError else { return false }
                return why.contains("maxLanes = 3")
            }
            #expect(pool.threadCount == 0)
            await pool.shutdown()
        }

        @Test func nestedLaunchOnTheSamePoolRunsInlineOnTheCallingLane() async throws {
            let pool = TaskletPool(configuration: .init(threadName: "tl-nested"))
            let fromLanes = Atomic<Int>(0)
            let result = try blocking { try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { coord in
                let me = pthread_self()
                // From the coordinator: 3 lanes, run one after another on this thread.
                let inner = try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { inner in
                    try inner.parallelForWorkers { w in
                        w.scratch = pthread_equal(pthread_self(), me) != 0 ? w.lane : -1
                    }
                    return (0..<inner.dataWorkerCount).map { inner.dataScratch($0) }
                }
                #expect(inner == [1, 2], "both data lanes ran, on the calling thread")
                // From a data lane: a nested loop on the same pool.
                try coord.parallelForWorkers { w in
                    let sum = try? Tasklet.parallelReduce(0..<1_000, identity: 0, combine: +, lanes: 4, pool: pool) { chunk in
                        chunk.reduce(0, +)
                    }
                    if sum == 499_500 { fromLanes.add(1, ordering: .relaxed) }
                }
                coord.setOutput([UInt8(inner.count)])
            } }
            #expect(result.output == [2])
            #expect(fromLanes.load(ordering: .relaxed) == 1)
            #expect(pool.threadCount == 1, "nested launches start no thread")
            await pool.shutdown()
        }

        @Test func aBarrierInANestedLaunchFailsInsteadOfHanging() async throws {
            let pool = TaskletPool()
            let (error, timedOut) = withWatchdog { cancellation -> String in
                do {
                    return try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }, cancellation: cancellation) { _ -> String in
                        do {
                            _ = try pool.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { inner in
                                try inner.parallelForWorkers { w in try w.barrier() }
                            }
                            return "no error"
                        } catch {
                            return "\(error)"
                        }
                    }
                } catch {
                    return "outer launch failed: \(error)"
                }
            }
            #expect(!timedOut)
            #expect(error.contains("barrier() in a nested launch"), "\(error)")
            await pool.shutdown()
        }

        @Test func nestedLaunchThroughAnotherPoolRunsInline() async throws {
            let outer = TaskletPool()
            let inner = TaskletPool()
            let ran = Atomic<Int>(0)
            _ = try blocking { try outer.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { _ in
                // outer's coordinator launches on inner, whose coordinator (same thread)
                // launches on outer again: that one runs inline rather than deadlocking.
                _ = try inner.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { _ in
                    _ = try outer.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { c in
                        try c.parallelForWorkers { _ in ran.add(1, ordering: .relaxed) }
                    }
                }
            } }
            #expect(ran.load(ordering: .relaxed) == 1)
            await inner.shutdown()
            await outer.shutdown()
        }

        @Test func anEscapedCoordinatorContextCannotStartPhasesLater() throws {
            let escaped = Escaped()
            _ = try Tasklet.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { coord in escaped.run = { try coord.parallelForWorkers { _ in } } }
            #expect(throws: TaskletError.self) { try escaped.run?() }
        }

        final class Escaped: @unchecked Sendable {
            // @unchecked Sendable: used by one test thread only.
            var run: (() throws -> Void)?
        }

        @Test func coordinatorErrorNamesLaneZero() {
            #expect {
                _ = try Tasklet.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { _ in throw Boom(lane: 0) }
            } throws: { error in
                guard case .laneFailed(let lane, let inner) = error as? TaskletError else { return false }
                return lane == 0 && (inner as? Boom) == Boom(lane: 0)
            }
        }

        @Test func resultReportsPerLaneBusyTime() throws {
            let result = try Tasklet.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { coord in
                try coord.parallelForWorkers { w in
                    var x = 0
                    for i in 0..<200_000 { x &+= i &* w.lane }
                    w.scratch = x
                }
            }
            #expect(result.laneBusyTime.count == 3)
            #expect(result.laneBusyTime[1] > .zero && result.laneBusyTime[2] > .zero)
            #expect(result.elapsed >= result.laneBusyTime[0])
        }

        @Test func errorsDescribeTheirLane() {
            #expect(TaskletError.fuelExhausted(lane: 3, requested: 5, remaining: 2).description.contains("lane 3"))
            #expect(TaskletError.laneFailed(lane: 2, error: Boom(lane: 2)).description.contains("lane 2"))
            #expect(TaskletError.laneFailed(lane: 2, error: Boom(lane: 2)).lane == 2)
            #expect(TaskletError.cancelled.lane == nil)
        }
    }
}
