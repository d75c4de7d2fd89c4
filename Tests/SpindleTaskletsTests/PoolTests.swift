import SpindleTasklets
import Synchronization
import Testing

extension TaskletTests {
    @Suite struct Pool {
        @Test func aThousandLaunchesReuseTheSameThreads() async throws {
            let pool = TaskletPool()
            _ = try blocking { try pool.launch(workers: 4, shared: 0, scratch: { _ in 0 }) { try $0.parallelForWorkers { _ in } } }
            let poolThreads = pool.threadCount
            let processThreads = processThreadCount()
            var sum = 0
            for i in 0..<1_000 {
                let result = try blocking {
                    try pool.launch(workers: 2 + i % 3, shared: i, scratch: { _ in 0 }) { coord in
                        try coord.parallelForWorkers { w in w.scratch = w.shared + w.lane }
                        coord.setOutput([UInt8(truncatingIfNeeded: coord.dataScratch(0))])
                    }
                }
                sum += Int(result.output[0])
            }
            #expect(sum == (0..<1_000).reduce(0) { $0 + Int(UInt8(truncatingIfNeeded: $1 + 1)) })
            #expect(poolThreads == 3)
            #expect(pool.threadCount == poolThreads)
            #expect(processThreadCount() <= processThreads)
            await pool.shutdown()
            #expect(processThreadCount() <= processThreads - 3)
        }

        @Test func concurrentLaunchesFromFourThreadsAllCompleteCorrectly() async {
            let pool = TaskletPool()
            let failures = Atomic<Int>(0)
            let completed = Atomic<Int>(0)
            onThreads(4) { t in
                for i in 0..<200 {
                    do {
                        let result = try pool.launch(workers: 3, shared: t * 1_000 + i, scratch: { _ in 0 }) { coord in
                            try coord.parallelForWorkers { w in
                                try w.barrier()
                                w.scratch = w.shared * 10 + w.lane
                            }
                            let expected = [coord.shared * 10 + 1, coord.shared * 10 + 2]
                            coord.setOutput(expected == [coord.dataScratch(0), coord.dataScratch(1)] ? [1] : [0])
                        }
                        if result.output == [1] { completed.add(1, ordering: .relaxed) }
                    } catch {
                        failures.add(1, ordering: .relaxed)
                    }
                }
            }
            #expect(failures.load(ordering: .relaxed) == 0)
            #expect(completed.load(ordering: .relaxed) == 800)
            #expect(pool.threadCount == 2)
            await pool.shutdown()
        }

        @Test func asyncLaunchSuspendsAndReturnsTheResult() async throws {
            let pool = TaskletPool()
            let results = try await withThrowingTaskGroup(of: [UInt8].self) { group in
                for k in 0..<4 {
                    group.addTask {
                        try await pool.launch(workers: 3, shared: k, scratch: { _ in 0 }) { coord in
                            try coord.parallelForWorkers { w in w.scratch = w.shared + w.lane }
                            coord.setOutput([UInt8(coord.dataScratch(0) + coord.dataScratch(1))])
                        }.output
                    }
                }
                var all: [[UInt8]] = []
                for try await r in group { all.append(r) }
                return all.sorted { $0[0] < $1[0] }
            }
            #expect(results == [[3], [5], [7], [9]])
            #expect(pool.threadCount == 3)   // two lane threads and the runner
            await pool.shutdown()
        }

        @Test func cancellingTheAwaitingTaskCancelsTheTasklet() async throws {
            let pool = TaskletPool()
            let counters = Counters()
            let task = Task {
                try await pool.launch(workers: 3, shared: counters, scratch: { _ in 0 }) { coord in
                    try coord.parallelForWorkers { w in
                        w.shared.started.add(1, ordering: .releasing)
                        while true { try w.barrier() }
                    }
                }
            }
            // Wait (bounded) until both lanes run, then cancel the awaiting task.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(30))
            while counters.started.load(ordering: .acquiring) < 2 && clock.now < deadline {
                await Task.yield()
            }
            #expect(counters.started.load(ordering: .acquiring) == 2)
            task.cancel()
            let outcome = await task.result
            guard case .failure(let error) = outcome else { Issue.record("launch succeeded"); return }
            #expect((error as? TaskletError)?.isCancellation == true)
            await pool.shutdown()
        }

        @Test func shutdownJoinsThreadsAndRefusesLaterLaunches() async throws {
            let before = processThreadCount()
            let pool = TaskletPool(configuration: .init(waitPolicy: .passive))
            _ = try blocking { try pool.launch(workers: 4, shared: 0, scratch: { _ in 0 }) { try $0.parallelForWorkers { _ in } } }
            _ = try await pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { try $0.parallelForWorkers { _ in } }
            #expect(pool.threadCount == 4)
            await pool.shutdown()
            #expect(processThreadCount() <= before)
            #expect(throws: TaskletError.self) {
                _ = try blocking { try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { _ in } }
            }
            await #expect(throws: TaskletError.self) {
                _ = try await pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { _ in }
            }
        }

        @Test func anIdlePoolParksItsThreads() async throws {
            let pool = TaskletPool(configuration: .init(waitPolicy: .default))
            _ = try blocking { try pool.launch(workers: 4, shared: 0, scratch: { _ in 0 }) { try $0.parallelForWorkers { _ in } } }
            // Spinning threads show as running (R); parked ones as sleeping (S). Poll until
            // every lane thread sleeps; a pool that kept spinning fails at the deadline.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(20))
            var states = threadStates(named: "spindle-lane")
            while states.contains(where: { $0 != "S" }) && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
                states = threadStates(named: "spindle-lane")
            }
            #expect(states.count >= 3)
            #expect(states.allSatisfy { $0 == "S" }, "lane thread states: \(states)")
            await pool.shutdown()
        }

        @Test func waitPolicyParsesLikeOpenMP() {
            #expect(WaitPolicy.passive.spin == .zero)
            #expect(WaitPolicy.active.spin > WaitPolicy.default.spin)
            #expect(WaitPolicy(spin: .seconds(-1)).spin == .zero)
        }
    }
}
