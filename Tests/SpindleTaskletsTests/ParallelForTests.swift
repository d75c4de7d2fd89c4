import SpindleTasklets
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The tasklets' front door: loops and reductions equal to a serial loop, value-returning
/// launches, the coordinator computing, nesting, fairness, and the three fixes.
extension TaskletTests {
    @Suite struct ParallelForTests {
        static let sizes = [0, 1, 2, 3, 5, 64, 1_000, 10_007]
        static let schedules: [Tasklet.Schedule] = [.static, .dynamic(grain: 0), .dynamic(grain: 1),
                                                    .dynamic(grain: 3), .dynamic(grain: 64), .dynamic(grain: 50_000)]
        static let laneCounts = [1, 2, 3, 5]

        /// Visits per index, so a loop can show every index ran exactly once.
        final class Visits: Sendable {
            let counts: Mutex<[Int]>
            init(_ n: Int) { counts = Mutex(Array(repeating: 0, count: n)) }
            func visit(_ i: Int) { counts.withLock { $0[i] += 1 } }
            var all: [Int] { counts.withLock { $0 } }
        }

        @Test(arguments: sizes, laneCounts)
        func parallelForVisitsEveryIndexOnceLikeASerialLoop(size: Int, lanes: Int) throws {
            for schedule in Self.schedules {
                let visits = Visits(size)
                try Tasklet.parallelFor(0..<size, schedule: schedule, lanes: lanes) { i in visits.visit(i) }
                #expect(visits.all == Array(repeating: 1, count: size), "\(schedule), \(lanes) lanes, \(size) indices")
            }
        }

        @Test(arguments: sizes, laneCounts)
        func chunksCoverTheRangeExactly(size: Int, lanes: Int) throws {
            for schedule in Self.schedules {
                let visits = Visits(size)
                let chunks = Atomic<Int>(0)
                try Tasklet.parallelFor(chunksOf: 10..<(10 + size), schedule: schedule, lanes: lanes) { chunk in
                    #expect(!chunk.isEmpty)
                    chunks.add(1, ordering: .relaxed)
                    for i in chunk { visits.visit(i - 10) }
                }
                #expect(visits.all == Array(repeating: 1, count: size), "\(schedule), \(lanes) lanes, \(size) indices")
                if case .dynamic(let grain) = schedule, grain > 0 {
                    #expect(chunks.load(ordering: .relaxed) == (size + grain - 1) / grain)
                }
            }
        }

        @Test(arguments: sizes, laneCounts)
        func parallelReduceEqualsTheSerialFold(size: Int, lanes: Int) throws {
            let values = (0..<size).map { Int64(($0 &* 7_919) % 1_013) - 500 }
            let serial = values.reduce(0, +)
            for schedule in Self.schedules {
                let sum = try Tasklet.parallelReduce(0..<size, schedule: schedule, identity: Int64(0), combine: +,
                                                     lanes: lanes) { chunk in values[chunk].reduce(0, +) }
                #expect(sum == serial, "\(schedule), \(lanes) lanes, \(size) indices")
            }
            // Non-commutative but associative, with the static schedule: lane order is kept.
            let text = try Tasklet.parallelReduce(0..<size, identity: "", combine: +, lanes: lanes) { chunk in
                chunk.map { String($0 % 10) }.joined()
            }
            #expect(text == (0..<size).map { String($0 % 10) }.joined())
        }

        @Test func moreLanesThanIndicesRunsOnlyAsManyLanes() throws {
            let lanesSeen = Mutex<Set<Int>>([])
            let pool = TaskletPool()
            try Tasklet.parallelFor(chunksOf: 0..<2, schedule: .static, lanes: 8, pool: pool) { chunk in
                lanesSeen.withLock { _ = $0.insert(chunk.lowerBound) }
            }
            #expect(lanesSeen.withLock { $0 } == [0, 1])
            #expect(pool.threadCount == 1, "two indices: the caller and one pool thread")
        }

        @Test func aThrowingBodyFailsTheLoopNamingItsLane() {
            struct Bad: Error {}
            #expect {
                try Tasklet.parallelFor(0..<10_000, schedule: .dynamic(grain: 16), lanes: 3) { i in
                    if i == 5_000 { throw Bad() }
                }
            } throws: { error in
                guard case .laneFailed(let lane, let inner) = error as? TaskletError else { return false }
                return (0..<3).contains(lane) && inner is Bad
            }
            #expect(throws: TaskletError.self) { try Tasklet.parallelFor(0..<10, lanes: 0) { _ in } }
            #expect(throws: TaskletError.self) { try Tasklet.parallelFor(chunksOf: 0..<10, schedule: .dynamic(grain: -1)) { _ in } }
        }

        @Test func launchReturnsTheCoordinatorsValue() throws {
            let squares = try Tasklet.launch(workers: 3, scratch: { _ in 0 }) { coord -> [Int] in
                try coord.parallelForWorkers(includingCoordinator: true) { w in w.scratch = w.lane * w.lane }
                return (0..<coord.workerCount).map { coord.scratch($0) }
            }
            #expect(squares == [0, 1, 4])
            let text = try Tasklet.launch(workers: 2, shared: "shared") { coord in coord.shared.uppercased() }
            #expect(text == "SHARED")
            let plain = try Tasklet.launch(workers: 2) { coord in coord.workerCount }
            #expect(plain == 2)
            // The reference model's byte output is still there.
            let bytes = try Tasklet.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { coord in coord.setOutput([9]) }
            #expect(bytes.output == [9])
        }

        @Test func lanesDefaultToTheActiveCores() throws {
            #expect(Tasklet.defaultLanes >= 1)
            let lanes = try Tasklet.launch { coord in coord.workerCount }
            #expect(lanes == Tasklet.defaultLanes)
        }

        @Test func theCoordinatorComputesAndTakesPartInTheBarrier() throws {
            let one = try Tasklet.launch(workers: 1, scratch: { _ in -1 }) { coord -> Int in
                try coord.parallelForWorkers(includingCoordinator: true) { w in w.scratch = w.lane }
                return coord.scratch(0)
            }
            #expect(one == 0, "a one-lane tasklet still computes, on lane 0")
            for workers in [2, 3] {
                let rounds = try Tasklet.launch(workers: workers, shared: Counters(), scratch: { _ in 0 }) { coord -> [Int] in
                    try coord.parallelForWorkers(includingCoordinator: true) { w in
                        for round in 1...50 {
                            w.shared.arrivals.add(1, ordering: .relaxed)
                            try w.barrier()
                            if w.shared.arrivals.load(ordering: .relaxed) < round * w.workerCount {
                                w.shared.violations.add(1, ordering: .relaxed)
                            }
                            try w.barrier()
                        }
                        w.scratch = 50
                    }
                    #expect(coord.shared.violations.load(ordering: .relaxed) == 0)
                    return (0..<coord.workerCount).map { coord.scratch($0) }
                }
                #expect(rounds == Array(repeating: 50, count: workers))
            }
        }

        @Test func aNestedLoopRunsInlineOnTheCallingLane() throws {
            let pool = TaskletPool()
            let total = try Tasklet.parallelReduce(0..<8, identity: 0, combine: +, lanes: 2, pool: pool) { outer in
                var sum = 0
                for row in outer {
                    let caller = pthread_self()
                    let onCaller = Atomic<Bool>(true)
                    sum += (try? Tasklet.parallelReduce(0..<100, identity: 0, combine: +, lanes: 2, pool: pool) { inner in
                        if pthread_equal(pthread_self(), caller) == 0 { onCaller.store(false, ordering: .relaxed) }
                        return inner.reduce(0, +) * row
                    }) ?? -1_000_000
                    if !onCaller.load(ordering: .relaxed) { sum -= 1_000_000 }
                }
                return sum
            }
            #expect(total == (0..<8).reduce(0) { $0 + 4_950 * $1 })
            #expect(pool.threadCount == 1)
        }

        @Test func asyncFormsSuspendAndReturnTheSameResults() async throws {
            let visits = Visits(500)
            try await Tasklet.parallelFor(0..<500, schedule: .dynamic(grain: 7)) { i in visits.visit(i) }
            #expect(visits.all == Array(repeating: 1, count: 500))
            let sum = try await Tasklet.parallelReduce(0..<500, identity: 0, combine: +) { $0.reduce(0, +) }
            #expect(sum == 124_750)
            let lanes = try await Tasklet.launch(workers: 2) { coord in coord.workerCount * 10 }
            #expect(lanes == 20)
        }

        // MARK: The three fixes

        @Test func anEscapedContextCannotSpendALaterLaunchsFuel() async throws {
            let pool = TaskletPool()
            let escaped = EscapedFuel()
            _ = try blocking {
                try pool.launch(workers: 1, shared: 0, scratch: { _ in 0 }, fuel: .sharedPool(100)) { coord in
                    escaped.spend = { try coord.fuelCheckpoint($0) }
                }
            }
            let running = Atomic<Bool>(false)
            let stolen = Atomic<Bool>(false)
            let laterResult = Mutex<String>("")
            let thief = Mutex<String>("")
            onThreads(2) { t in
                if t == 0 {
                    // The later launch, whose pool of 100 must stay whole.
                    do {
                        _ = try pool.launch(workers: 1, shared: 0, scratch: { _ in 0 }, fuel: .sharedPool(100)) { coord in
                            running.store(true, ordering: .releasing)
                            while !stolen.load(ordering: .acquiring) {}
                            try coord.fuelCheckpoint(100)
                        }
                        laterResult.withLock { $0 = "ok" }
                    } catch {
                        laterResult.withLock { $0 = "\(error)" }
                    }
                } else {
                    while !running.load(ordering: .acquiring) {}
                    do {
                        try escaped.spend?(50)
                        thief.withLock { $0 = "spent" }
                    } catch {
                        thief.withLock { $0 = "\(error)" }
                    }
                    stolen.store(true, ordering: .releasing)
                }
            }
            #expect(thief.withLock { $0 }.contains("escaped"), "\(thief.withLock { $0 })")
            #expect(laterResult.withLock { $0 } == "ok")
            await pool.shutdown()
        }

        @Test func aScratchFactoryLaunchingOnItsPoolGetsATypedError() async throws {
            let pool = TaskletPool()
            let refusals = Mutex<[String]>([])
            let (_, timedOut) = try withWatchdog(seconds: 20) { cancellation in
                try pool.launch(workers: 2, shared: 0, scratch: { lane -> Int in
                    do {
                        _ = try pool.launch(workers: 2, shared: 0, scratch: { _ in 0 }) { _ in }
                    } catch let error as TaskletError {
                        if case .invalidConfiguration(let why) = error { refusals.withLock { $0.append(why) } }
                    } catch {}
                    return lane
                }, cancellation: cancellation) { coord in
                    try coord.parallelForWorkers { w in w.scratch += 1 }
                }
            }
            #expect(!timedOut)
            #expect(refusals.withLock { $0.count } == 2)
            #expect(refusals.withLock { $0 }.allSatisfy { $0.contains("scratch factory") })
            await pool.shutdown()
        }

        @Test func aCancelledAsyncLaunchStillQueuedNeverRuns() async throws {
            let pool = TaskletPool()
            let gate = Gate()
            let blocker = Task {
                try await Tasklet.launch(workers: 1, pool: pool) { _ in
                    gate.started.store(true, ordering: .releasing)
                    while !gate.release.load(ordering: .acquiring) {}
                }
            }
            while !gate.started.load(ordering: .acquiring) { await Task.yield() }
            let victim = Task {
                try await Tasklet.launch(workers: 1, pool: pool) { _ in gate.victimRan.store(true, ordering: .releasing) }
            }
            victim.cancel()
            let outcome = await victim.result
            #expect(throws: TaskletError.self) { try outcome.get() }
            let ranEarly = gate.victimRan.load(ordering: .acquiring)
            #expect(!ranEarly, "answered while the runner was still busy")
            gate.release.store(true, ordering: .releasing)
            try await blocker.value
            // The runner takes jobs in order: once this one ran, the victim's turn has passed.
            let after = try await Tasklet.launch(workers: 1, pool: pool) { _ in 7 }
            #expect(after == 7)
            let ranLate = gate.victimRan.load(ordering: .acquiring)
            #expect(!ranLate, "the cancelled launch never ran")
            await pool.shutdown()
        }

        @Test func concurrentLaunchesShareThePoolFairly() async throws {
            let pool = TaskletPool()
            // Launches started so far, and the most that started between a launch asking for
            // the pool and starting: first come, first served lets at most the running one and
            // one that asked just before overtake it; an unfair lock lets a caller in a loop
            // overtake a waiter any number of times.
            let started = Atomic<Int>(0)
            let mostOvertaken = Atomic<Int>(0)
            let ready = Atomic<Int>(0)
            onThreads(3) { _ in
                ready.add(1, ordering: .acquiringAndReleasing)
                while ready.load(ordering: .acquiring) < 3 {}
                for _ in 0..<100 {
                    let asked = started.load(ordering: .acquiring)
                    _ = try? pool.launch(workers: 2, shared: 0, scratch: { _ in UInt64(0) }) { coord in
                        let overtaken = started.add(1, ordering: .acquiringAndReleasing).oldValue - asked
                        var seen = mostOvertaken.load(ordering: .relaxed)
                        while overtaken > seen {
                            let (done, actual) = mostOvertaken.compareExchange(expected: seen, desired: overtaken, ordering: .relaxed)
                            if done { break }
                            seen = actual
                        }
                        try coord.parallelForWorkers(includingCoordinator: true) { w in
                            var x = UInt64(w.lane | 1)
                            for _ in 0..<2_000 { x ^= x << 13; x ^= x >> 7; x ^= x << 17 }
                            w.scratch = x
                        }
                    }
                }
            }
            #expect(started.load(ordering: .relaxed) == 300)
            let most = mostOvertaken.load(ordering: .relaxed)
            #expect(most <= 3, "a launch saw \(most) others start while it waited for the pool")
            await pool.shutdown()
        }
    }
}

/// Carries an escaped coordinator's fuel checkpoint out of its launch.
final class EscapedFuel: @unchecked Sendable {
    // @unchecked Sendable: set by the first launch's coordinator before any other thread
    // starts; read afterwards only.
    var spend: ((UInt64) throws -> Void)?
}

/// Flags between a test and the launches it blocks.
final class Gate: Sendable {
    let started = Atomic<Bool>(false)
    let release = Atomic<Bool>(false)
    let victimRan = Atomic<Bool>(false)
}
