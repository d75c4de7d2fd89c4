import SpindleTasklets
import Synchronization
import Testing

extension TaskletTests {
    @Suite struct Fuel {
        @Test func perLaneSlicesFailTheLaneThatOverrunsAndNameIt() throws {
            // 4 lanes share 400: 100 each. Lane 3 asks for 150 in steps of 10; the others 50.
            let counters = Counters()
            let (outcome, timedOut) = withWatchdog { cancellation in
                Result { () throws(TaskletError) -> TaskletResult in
                    try Tasklet.launch(workers: 4, shared: counters, scratch: { _ in 0 }, fuel: .perLane(400),
                                       cancellation: cancellation) { coord in
                        try coord.parallelForWorkers { w in
                            let steps = w.lane == 3 ? 15 : 5
                            for _ in 0..<steps {
                                do throws(TaskletError) { try w.fuelCheckpoint(10) } catch {
                                    if case .fuelExhausted = error { w.shared.exhaustedSeen.add(1, ordering: .relaxed) }
                                    throw error
                                }
                                w.scratch += 10
                            }
                        }
                    }
                }
            }
            #expect(!timedOut)
            guard case .failure(.fuelExhausted(let lane, let requested, let remaining)) = outcome else {
                Issue.record("expected fuelExhausted, got \(outcome)")
                return
            }
            #expect(lane == 3 && requested == 10 && remaining == 0)
            #expect(counters.exhaustedSeen.load(ordering: .relaxed) == 1)
        }

        @Test func perLaneSlicesThatSufficeReportFuelUsed() throws {
            let result = try Tasklet.launch(workers: 3, shared: 0, scratch: { _ in 0 }, fuel: .perLane(301)) { coord in
                try coord.fuelCheckpoint(101)   // lane 0 gets the extra unit: 101
                try coord.parallelForWorkers { w in try w.fuelCheckpoint(100) }
            }
            #expect(result.fuelUsed == 301)
            #expect(result.laneFuelUsed == [101, 100, 100])
        }

        @Test func sharedPoolExhaustionFailsTheTaskletOnce() throws {
            let counters = Counters()
            let (outcome, timedOut) = withWatchdog { cancellation in
                Result { () throws(TaskletError) -> TaskletResult in
                    try Tasklet.launch(workers: 4, shared: counters, scratch: { _ in 0 }, fuel: .sharedPool(1_000),
                                       cancellation: cancellation) { coord in
                        try coord.parallelForWorkers { w in
                            while true {
                                do throws(TaskletError) { try w.fuelCheckpoint(7) } catch {
                                    switch error {
                                    case .fuelExhausted: w.shared.exhaustedSeen.add(1, ordering: .relaxed)
                                    case .cancelled: w.shared.cancelledSeen.add(1, ordering: .relaxed)
                                    default: break
                                    }
                                    throw error
                                }
                            }
                        }
                    }
                }
            }
            #expect(!timedOut)
            #expect(counters.exhaustedSeen.load(ordering: .relaxed) == 1)
            #expect(counters.cancelledSeen.load(ordering: .relaxed) == 2)
            guard case .failure(.fuelExhausted(let lane, let requested, let remaining)) = outcome else {
                Issue.record("expected fuelExhausted, got \(outcome)")
                return
            }
            #expect((1...3).contains(lane))
            #expect(requested == 7 && remaining == 1_000 % 7)
        }

        @Test func sharedPoolReportsFuelUsed() throws {
            let result = try Tasklet.launch(workers: 3, shared: 0, scratch: { _ in 0 }, fuel: .sharedPool(1_000)) { coord in
                try coord.parallelForWorkers { w in
                    for _ in 0..<10 { try w.fuelCheckpoint(UInt64(w.lane)) }
                }
                try coord.fuelCheckpoint(5)
            }
            #expect(result.fuelUsed == 35)
            #expect(result.laneFuelUsed == [5, 10, 20])
        }

        @Test(arguments: [FuelPolicy.perLane(0), .sharedPool(0), .unlimited])
        func zeroAmountCheckpointsAreNoOps(fuel: FuelPolicy) throws {
            let result = try Tasklet.launch(workers: 3, shared: 0, scratch: { _ in 0 }, fuel: fuel) { coord in
                for _ in 0..<1_000 { try coord.fuelCheckpoint(0) }
                try coord.parallelForWorkers { w in
                    for _ in 0..<1_000 { try w.fuelCheckpoint(0) }
                }
            }
            #expect(result.fuelUsed == 0)
        }

        @Test func coordinatorExhaustionNamesLaneZero() {
            #expect {
                _ = try Tasklet.launch(workers: 2, shared: 0, scratch: { _ in 0 }, fuel: .sharedPool(5)) { coord in
                    try coord.fuelCheckpoint(6)
                }
            } throws: { error in
                guard case .fuelExhausted(let lane, _, _) = error as? TaskletError else { return false }
                return lane == 0
            }
        }

        @Test func aSwallowedExhaustionStillFailsTheTasklet() {
            #expect {
                _ = try Tasklet.launch(workers: 3, shared: 0, scratch: { _ in 0 }, fuel: .perLane(3)) { coord in
                    try? coord.parallelForWorkers { w in
                        _ = try? w.fuelCheckpoint(w.lane == 2 ? 2 : 1)
                    }
                }
            } throws: { ($0 as? TaskletError)?.lane == 2 }
        }
    }
}
