import Testing
import SpindleKernel
import SpindleSupport

@Suite struct ClockTests {
    @Test func systemClockIsMonotonic() {
        let c = SystemClock()
        var last = c.now()
        for _ in 0..<10_000 {
            let t = c.now()
            #expect(t >= last)
            last = t
        }
        #expect(c.wallNanoseconds() > 1_600_000_000_000_000_000)   // after 2020
    }

    @Test func manualClockMovesOnlyWhenTold() {
        let c = ManualClock(start: MonotonicInstant(nanoseconds: 100), wall: 5_000)
        #expect(c.now() == MonotonicInstant(nanoseconds: 100))
        c.advance(by: .microseconds(2))
        #expect(c.now().nanoseconds == 2_100)
        #expect(c.wallNanoseconds() == 7_000)
        c.advance(by: .seconds(-1))                         // ignored
        #expect(c.now().nanoseconds == 2_100)
        c.advance(to: MonotonicInstant(nanoseconds: 1_000)) // earlier: ignored
        #expect(c.now().nanoseconds == 2_100)
        c.advance(to: MonotonicInstant(nanoseconds: 3_100))
        #expect(c.now().nanoseconds == 3_100 && c.wallNanoseconds() == 8_000)
        c.setWall(10)                                       // wall steps back, monotonic does not
        #expect(c.wallNanoseconds() == 10 && c.now().nanoseconds == 3_100)
    }

    @Test func instantArithmeticSaturates() {
        let t = MonotonicInstant(nanoseconds: 10)
        #expect(t + .nanoseconds(5) == MonotonicInstant(nanoseconds: 15))
        #expect(t + .nanoseconds(-50) == .zero)
        #expect(MonotonicInstant(nanoseconds: .max - 1) + .seconds(1) == MonotonicInstant(nanoseconds: .max))
        #expect(MonotonicInstant(nanoseconds: 30) - t == .nanoseconds(20))
        #expect(t - MonotonicInstant(nanoseconds: 30) == .nanoseconds(-20))
        #expect(Duration.seconds(Int64.max).nanosecondsClamped == .max)
        #expect(Duration.seconds(Int64.min).nanosecondsClamped == .min)
        #expect(Duration.milliseconds(3).nanosecondsClamped == 3_000_000)
    }
}

@Suite struct HybridLogicalClockTests {
    @Test func tickIsMonotonicWhenWallStepsBack() {
        let wall = ManualClock(wall: 1_000)
        let hlc = HybridLogicalClock(clock: wall)
        #expect(hlc.tick() == HLCTimestamp(physical: 1_000, logical: 0))
        #expect(hlc.tick() == HLCTimestamp(physical: 1_000, logical: 1))
        wall.setWall(400)                               // NTP steps the clock back
        let a = hlc.tick(), b = hlc.tick()
        #expect(a == HLCTimestamp(physical: 1_000, logical: 2))
        #expect(b == HLCTimestamp(physical: 1_000, logical: 3))
        wall.setWall(2_000)                             // wall catches up: logical resets
        #expect(hlc.tick() == HLCTimestamp(physical: 2_000, logical: 0))
        #expect(hlc.current == HLCTimestamp(physical: 2_000, logical: 0))
    }

    @Test func receiveRules() {
        let wall = ManualClock(wall: 1_000)
        let hlc = HybridLogicalClock(clock: wall)
        _ = hlc.tick()                                                      // (1000, 0)
        // Remote ahead of both: take its physical part, logical + 1.
        #expect(hlc.receive(HLCTimestamp(physical: 5_000, logical: 7)) == HLCTimestamp(physical: 5_000, logical: 8))
        // Remote equal physical, smaller logical: our logical + 1.
        #expect(hlc.receive(HLCTimestamp(physical: 5_000, logical: 2)) == HLCTimestamp(physical: 5_000, logical: 9))
        // Remote equal physical, larger logical: max + 1.
        #expect(hlc.receive(HLCTimestamp(physical: 5_000, logical: 20)) == HLCTimestamp(physical: 5_000, logical: 21))
        // Remote behind, our last ahead of wall: our logical + 1.
        #expect(hlc.receive(HLCTimestamp(physical: 10, logical: 99)) == HLCTimestamp(physical: 5_000, logical: 22))
        // Wall ahead of everything: wall, logical 0.
        wall.setWall(9_000)
        #expect(hlc.receive(HLCTimestamp(physical: 8_000, logical: 3)) == HLCTimestamp(physical: 9_000, logical: 0))
        // Logical counter exhausted: borrow a nanosecond, still strictly greater.
        let r = hlc.receive(HLCTimestamp(physical: 9_000, logical: .max))
        #expect(r > HLCTimestamp(physical: 9_000, logical: .max))
        #expect(hlc.tick() > r)
    }

    @Test func driftBoundRefusesStampsFromTheFarFuture() throws {
        let wall = ManualClock(wall: 1_000_000)
        let hlc = HybridLogicalClock(clock: wall)
        let before = hlc.tick()
        let far = HLCTimestamp(physical: 1_000_000 + 5_000_000_001, logical: 0)
        #expect(throws: HLCDriftError(remote: far, localWall: 1_000_000, maximumDrift: .seconds(5))) {
            try hlc.receive(far, maximumDrift: .seconds(5))
        }
        #expect(hlc.current == before)                  // unchanged
        let near = HLCTimestamp(physical: 1_000_000 + 5_000_000_000, logical: 3)
        #expect(try hlc.receive(near, maximumDrift: .seconds(5)) == HLCTimestamp(physical: near.physical, logical: 4))
    }

    /// Three nodes whose wall clocks disagree by seconds and step backwards at random exchange
    /// messages; every receive is stamped after its send, and each node's stamps only grow.
    @Test func causalOrderUnderSkewedClocks() {
        var rng = SeededRNG(seed: 42)
        let base: UInt64 = 1_700_000_000_000_000_000
        let skews: [Int64] = [0, 5_000_000_000, -3_000_000_000]
        let walls = skews.map { ManualClock(wall: UInt64(Int64(base) + $0)) }
        let clocks = walls.map { HybridLogicalClock(clock: $0) }
        var lastStamp = [HLCTimestamp](repeating: .zero, count: 3)
        var inFlight: [(to: Int, stamp: HLCTimestamp)] = []
        var maxWallEver: UInt64 = 0
        for step in 0..<5_000 {
            let node = Int.random(in: 0..<3, using: &rng)
            // Time passes unevenly; sometimes a wall clock steps back.
            walls[node].advance(by: .nanoseconds(Int64.random(in: 0..<1_000_000, using: &rng)))
            maxWallEver = max(maxWallEver, walls[node].wallNanoseconds())
            if step % 97 == 0 {
                walls[node].setWall(walls[node].wallNanoseconds() - UInt64.random(in: 0..<2_000_000_000, using: &rng))
            }
            let stamp: HLCTimestamp
            if !inFlight.isEmpty, let i = inFlight.indices.randomElement(using: &rng), inFlight[i].to == node {
                let msg = inFlight.remove(at: i)
                stamp = clocks[node].receive(msg.stamp)
                #expect(stamp > msg.stamp, "receive must follow its send")
            } else {
                stamp = clocks[node].tick()
                inFlight.append((to: (node + Int.random(in: 1...2, using: &rng)) % 3, stamp: stamp))
            }
            #expect(stamp > lastStamp[node], "stamps of one node must grow")
            lastStamp[node] = stamp
        }
        // Physical parts never run ahead of the fastest wall clock: HLC stays close to real time.
        #expect(lastStamp.allSatisfy { $0.physical <= maxWallEver })
        #expect(lastStamp.allSatisfy { $0.physical >= base })
    }
}

/// Sleeping on the kernel's clocks, and the Swift `Clock` adapter.
@Suite struct ClockSleepTests {
    @Test func aManualClockSleeperWakesWhenTheClockReachesItsDeadline() async throws {
        let clock = ManualClock()
        let woke = Locked<[Int]>([])
        let sleepers = (1...3).map { i in
            Task {
                try await clock.sleep(for: .seconds(i))
                woke.withLock { $0.append(i) }
            }
        }
        try await waitUntil("three sleepers") { clock.sleeperCount == 3 }
        clock.advance(by: .milliseconds(1500))
        try await sleepers[0].value
        #expect(woke.value == [1])
        #expect(clock.sleeperCount == 2)
        clock.advance(to: MonotonicInstant.zero + .seconds(3))
        try await sleepers[1].value
        try await sleepers[2].value
        #expect(Set(woke.value) == [1, 2, 3])
    }

    @Test func cancellingAManualClockSleepThrowsAtOnce() async throws {
        let clock = ManualClock()
        let sleeper = Task { try await clock.sleep(for: .seconds(60)) }
        try await waitUntil("the sleeper") { clock.sleeperCount == 1 }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(clock.sleeperCount == 0)
    }

    @Test func theSwiftClockAdapterSleepsOnTheUnderlyingClock() async throws {
        let manual = ManualClock()
        let sleeper = Task { try await Task.sleep(until: manual.now() + .seconds(5), clock: manual.asClock) }
        try await waitUntil("the sleeper") { manual.sleeperCount == 1 }
        #expect(manual.asClock.now == manual.now())
        manual.advance(by: .seconds(5))
        try await sleeper.value
        let system = SystemClock()
        let start = system.now()
        try await system.sleep(for: .milliseconds(10))
        #expect(system.now() - start >= .milliseconds(10))
    }
}
