import SpindleTasklets
import Synchronization
import Testing

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

        @Test func nestedLaunchOnTheSamePoolIsRefusedNotDeadlocked() async throws {
            let pool = TaskletPool()
            _ = try blocking { try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { coord in
                #expect(throws: TaskletError.self) {
                    _ = try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { _ in }
                }
                try coord.parallelForWorkers { w in
                    #expect(throws: TaskletError.self) {
                        _ = try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { _ in }
                    }
                }
            } }
            await pool.shutdown()
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
