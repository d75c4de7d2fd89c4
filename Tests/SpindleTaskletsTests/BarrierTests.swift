import SpindleTasklets
import Synchronization
import Testing

extension TaskletTests {
    @Suite struct Barrier {
        @Test(arguments: [3, 4])
        func tenThousandRoundsLoseNoArrivalAndAddNone(workers: Int) throws {
            let rounds = 10_000
            let counters = Counters()
            let (result, timedOut) = try withWatchdog { cancellation in
                try Tasklet.launch(workers: workers, shared: counters, scratch: { _ in 0 }, cancellation: cancellation) { coord in
                    try coord.parallelForWorkers { w in
                        let n = w.dataWorkerCount
                        for round in 0..<rounds {
                            w.shared.arrivals.add(1, ordering: .relaxed)
                            try w.barrier()
                            // Everyone arrived for `round`; nobody can be past round + 1.
                            let seen = w.shared.arrivals.load(ordering: .relaxed)
                            if seen < n * (round + 1) || seen > n * (round + 2) - 1 {
                                w.shared.violations.add(1, ordering: .relaxed)
                            }
                            w.scratch += 1
                        }
                    }
                    coord.setOutput((0..<coord.dataWorkerCount).map { UInt8(coord.dataScratch($0) == rounds ? 1 : 0) })
                }
            }
            #expect(!timedOut)
            #expect(counters.violations.load(ordering: .relaxed) == 0)
            #expect(counters.arrivals.load(ordering: .relaxed) == (workers - 1) * rounds)
            #expect(result.output == Array(repeating: 1, count: workers - 1))
        }

        @Test func cancelDuringABarrierReleasesEveryLane() throws {
            let counters = Counters()
            let (outcome, timedOut) = withWatchdog { cancellation in
                Result { () throws(TaskletError) -> TaskletResult in
                    try Tasklet.launch(workers: 4, shared: counters, scratch: { _ in 0 }, cancellation: cancellation) { coord in
                        try coord.parallelForWorkers { w in
                            if w.dataIndex == 0 {
                                // Wait until both peers are on their way into the barrier, give
                                // them a moment to spin and park there, then cancel from outside
                                // the tasklet (the coordinator is inside the join).
                                while w.shared.started.load(ordering: .acquiring) < 2 {}
                                let clock = ContinuousClock()
                                let until = clock.now.advanced(by: .milliseconds(2))
                                while clock.now < until {}
                                cancellation.cancel()
                                return
                            }
                            w.shared.started.add(1, ordering: .releasing)
                            do throws(TaskletError) {
                                try w.barrier()
                                try w.barrier()
                            } catch {
                                if error.isCancellation { w.shared.cancelledSeen.add(1, ordering: .relaxed) }
                            }
                        }
                    }
                }
            }
            #expect(!timedOut)
            #expect(counters.cancelledSeen.load(ordering: .relaxed) == 2)
            guard case .failure(let error) = outcome else { Issue.record("launch succeeded"); return }
            #expect(error.isCancellation)
        }

        @Test func coordinatorCancelBeforeAPhaseFailsItWithCancelled() throws {
            let counters = Counters()
            #expect {
                _ = try Tasklet.launch(workers: 3, shared: counters, scratch: { _ in 0 }) { coord in
                    coord.cancel()
                    #expect(coord.isCancelled)
                    #expect(throws: TaskletError.self) { try coord.barrier() }
                    try coord.parallelForWorkers { w in w.shared.started.add(1, ordering: .relaxed) }
                }
            } throws: { ($0 as? TaskletError)?.isCancellation == true }
            #expect(counters.started.load(ordering: .relaxed) == 0)
        }

        @Test func aLaneThrowingCancelsTheRestAndTheErrorNamesIt() throws {
            let counters = Counters()
            let (outcome, timedOut) = withWatchdog { cancellation in
                Result { () throws(TaskletError) -> TaskletResult in
                    try Tasklet.launch(workers: 4, shared: counters, scratch: { _ in 0 }, cancellation: cancellation) { coord in
                        try coord.parallelForWorkers { w in
                            if w.lane == 2 {
                                while w.shared.started.load(ordering: .acquiring) < 2 && !w.isCancelled {}
                                throw Boom(lane: 2)
                            }
                            w.shared.started.add(1, ordering: .releasing)
                            while true {
                                do { try w.barrier() } catch {
                                    w.shared.cancelledSeen.add(1, ordering: .relaxed)
                                    throw error
                                }
                            }
                        }
                        Issue.record("parallelForWorkers returned after a lane failed")
                    }
                }
            }
            #expect(!timedOut)
            #expect(counters.cancelledSeen.load(ordering: .relaxed) == 2)
            guard case .failure(.laneFailed(let lane, let inner)) = outcome else {
                Issue.record("expected laneFailed, got \(outcome)")
                return
            }
            #expect(lane == 2)
            #expect((inner as? Boom) == Boom(lane: 2))
        }

        @Test func aLaneThatFinishesEarlyDoesNotHangItsPeers() throws {
            let counters = Counters()
            let (_, timedOut) = try withWatchdog { cancellation in
                try Tasklet.launch(workers: 4, shared: counters, scratch: { _ in 0 }, cancellation: cancellation) { coord in
                    try coord.parallelForWorkers { w in
                        // Lane 1 leaves after one round; lanes 2 and 3 do five.
                        let rounds = w.lane == 1 ? 1 : 5
                        for _ in 0..<rounds {
                            try w.barrier()
                            w.scratch += 1
                        }
                    }
                    #expect((0..<3).map { coord.dataScratch($0) } == [1, 5, 5])
                }
            }
            #expect(!timedOut)
        }

        @Test func theBarrierIsReusableAcrossPhasesAndLaunches() throws {
            for _ in 0..<20 {
                let result = try Tasklet.launch(workers: 3, shared: 0, scratch: { _ in 0 }) { coord in
                    for _ in 0..<3 {
                        try coord.parallelForWorkers { w in
                            for _ in 0..<10 { try w.barrier(); w.scratch += 1 }
                        }
                    }
                    coord.setOutput([UInt8(coord.dataScratch(0)), UInt8(coord.dataScratch(1))])
                }
                #expect(result.output == [30, 30])
            }
        }
    }
}

