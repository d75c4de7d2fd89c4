import SpindleKernel
import Testing
@testable import SpindleRunner

@Suite("Phase barrier and coordinator")
struct PhaseBarrierTests {
    let a = ShardID(1), b = ShardID(2), c = ShardID(3)

    @Test("a round releases when every shard arrived, and only then")
    func release() {
        let clock = ManualClock()
        var barrier = PhaseBarrier(phaseTimeout: .seconds(5), idleTimeout: .seconds(2))
        let round = barrier.begin(tick: 1, phase: .sense, shards: [a, b, c], now: clock.now())
        #expect(barrier.arrive(a, round: round, now: clock.now()) == .counted(remaining: 2))
        #expect(barrier.arrive(a, round: round, now: clock.now()) == .duplicate)
        #expect(barrier.arrive(ShardID(9), round: round, now: clock.now()) == .unexpected)
        #expect(barrier.arrive(b, round: round + 1, now: clock.now()) == .stale)
        #expect(barrier.poll(now: clock.now()) == .waiting(deadline: clock.now() + .seconds(2)))
        #expect(barrier.arrive(b, round: round, now: clock.now()) == .counted(remaining: 1))
        #expect(barrier.arrive(c, round: round, now: clock.now()) == .released)
        #expect(barrier.poll(now: clock.now()) == .released)
    }

    @Test("a missing shard times out; the error names the phase, the tick and the shard")
    func phaseTimeoutNamesMissing() {
        let clock = ManualClock()
        var barrier = PhaseBarrier(phaseTimeout: .seconds(3), idleTimeout: .seconds(10))
        let round = barrier.begin(tick: 7, phase: .act, shards: [a, b, c], now: clock.now())
        _ = barrier.arrive(a, round: round, now: clock.now())
        clock.advance(by: .seconds(2))
        _ = barrier.arrive(c, round: round, now: clock.now())
        #expect(barrier.poll(now: clock.now()) == .waiting(deadline: MonotonicInstant.zero + .seconds(3)))
        clock.advance(by: .milliseconds(999))
        if case .timedOut = barrier.poll(now: clock.now()) { Issue.record("timed out early") }
        clock.advance(by: .milliseconds(1))
        guard case .timedOut(let error) = barrier.poll(now: clock.now()) else {
            Issue.record("no timeout at the deadline")
            return
        }
        #expect(error == .phaseTimedOut(phase: .act, tick: 7, missing: [b], waited: .seconds(3),
                                        limit: .phase(.seconds(3))))
        #expect(error.description.contains("shard-2"))
        #expect(error.description.contains("act phase of tick 7"))
        // A late arrival for the abandoned round is ignored.
        #expect(barrier.arrive(b, round: round, now: clock.now()) == .stale)
    }

    @Test("the idle timeout re-arms on every arrival")
    func idleTimeout() {
        let clock = ManualClock()
        var barrier = PhaseBarrier(phaseTimeout: .seconds(60), idleTimeout: .seconds(1))
        let round = barrier.begin(tick: 2, phase: .decay, shards: [a, b, c], now: clock.now())
        clock.advance(by: .milliseconds(900))
        _ = barrier.arrive(a, round: round, now: clock.now())
        clock.advance(by: .milliseconds(900))
        _ = barrier.arrive(b, round: round, now: clock.now())
        clock.advance(by: .milliseconds(900))
        #expect(barrier.poll(now: clock.now()) == .waiting(deadline: MonotonicInstant.zero + .milliseconds(2800)))
        clock.advance(by: .milliseconds(100))
        guard case .timedOut(let e) = barrier.poll(now: clock.now()),
              case let .phaseTimedOut(phase, tick, missing, _, limit) = e else {
            Issue.record("expected an idle timeout")
            return
        }
        #expect(phase == .decay && tick == 2 && missing == [c] && limit == .idle(.seconds(1)))
    }

    @Test("an empty round is released at once")
    func emptyRound() {
        var barrier = PhaseBarrier(phaseTimeout: .seconds(1), idleTimeout: .seconds(1))
        barrier.begin(tick: 1, phase: .sense, shards: [], now: .zero)
        #expect(barrier.poll(now: .zero) == .released)
    }

    @Test("registering twice and deregistering twice are errors; advance moves the tick")
    func registry() throws {
        let coordinator = Coordinator(clock: ManualClock())
        try coordinator.register(a)
        try coordinator.register(b)
        #expect(throws: RunnerError.alreadyRegistered(a)) { try coordinator.register(a) }
        #expect(coordinator.membership.shards == [a, b])
        let epoch = coordinator.membership.epoch
        try coordinator.deregister(a)
        #expect(coordinator.membership.epoch == epoch + 1)
        #expect(throws: RunnerError.notRegistered(a)) { try coordinator.deregister(a) }
        #expect(coordinator.placement.shards == [b])
        #expect(coordinator.currentTick == 0)
        #expect(coordinator.advance() == 1)
        #expect(coordinator.currentTick == 1)
    }
}
