import SpindleKernel
import SpindleSupport
import SpindleTasklets
import Synchronization

/// What a remote shard's server answered for one phase (or that its connection was lost).
struct RemoteArrival: Sendable {
    var result: Result<PhaseWork, PhaseFailure>
    var duration: Duration
    var stamp: HLCTimestamp
    /// The connection closed before the answer came.
    var lost = false
    var rollbackPointSaved = false
}

/// The thin shell around `PhaseBarrier`: in-process shards arrive in bulk after the pool's
/// join, remote shards from transport callbacks, and the watchdog folds in progress while a
/// lane is stuck. The coordinator lane waits for remote arrivals with the tasklet pool's
/// spin-then-park policy.
final class RoundGate: Sendable {
    private struct State {
        var barrier: PhaseBarrier
        var remote: [ShardID: RemoteArrival] = [:]
        /// The round's in-process shards, whose `doneRound` the watchdog reads.
        var probes: [ShardSlot] = []
    }
    private let state: Mutex<State>
    private let parker = Parker()
    /// The id of the last round that is released or failed (what a waiting lane spins on).
    private let settled = Atomic<UInt64>(0)
    private let clock: any SpindleClock
    /// Whether `clock` is the system clock (else waits wake every 20 ms to notice a clock a
    /// test moves by hand).
    private let systemClock: Bool

    init(barrier: PhaseBarrier, clock: any SpindleClock) {
        state = Mutex(State(barrier: barrier))
        self.clock = clock
        systemClock = clock is SystemClock
    }

    /// The in-process shards of the rounds to come (after the runner's shards changed).
    func setLocal(_ local: [ShardSlot]) {
        state.withLock { $0.probes = local }
    }

    /// Starts a round expecting `shards` (in increasing order) at `now`.
    func begin(tick: UInt64, phase: Phase, shards: [ShardID], now: MonotonicInstant) -> UInt64 {
        state.withLock { s in
            if !s.remote.isEmpty { s.remote.removeAll(keepingCapacity: true) }
            return s.barrier.begin(tick: tick, phase: phase, shards: shards, now: now)
        }
    }

    /// The gate's clock.
    func now() -> MonotonicInstant { clock.now() }

    /// A remote shard's answer for `round` (from its connection's thread).
    func arriveRemote(_ shard: ShardID, round: UInt64, _ arrival: RemoteArrival) {
        let now = clock.now()
        let released: Bool = state.withLock { s in
            switch s.barrier.arrive(shard, round: round, now: now) {
            case .counted:
                s.remote[shard] = arrival
                return false
            case .released:
                s.remote[shard] = arrival
                return true
            case .stale, .unexpected, .duplicate:
                return false
            }
        }
        if released { settle(round) }
    }

    /// A remote shard's connection closed: it fails the waiting round, if it is expected there.
    func lost(_ shard: ShardID, reason: String) {
        let round: UInt64? = state.withLock { s in
            guard s.barrier.status == .waiting, s.barrier.index(of: shard) != nil, !s.barrier.hasArrived(shard) else {
                return nil
            }
            return s.barrier.roundID
        }
        guard let round else { return }
        arriveRemote(shard, round: round, RemoteArrival(result: .failure(PhaseFailure(reason: reason)),
                                                        duration: .zero, stamp: .zero, lost: true))
    }

    /// In-process shards at `positions` finished `round` (after the pool's join), at `now`.
    /// - Returns: the round's state afterwards.
    func arriveLocal(_ positions: [Int], round: UInt64, now: MonotonicInstant) -> PhaseBarrier.Poll {
        let (poll, settledNow): (PhaseBarrier.Poll, Bool) = state.withLock { s in
            guard s.barrier.roundID == round else { return (s.barrier.poll(now: now), false) }
            var released = false
            for p in positions where s.barrier.arrive(at: p, now: now) == .released { released = true }
            return (s.barrier.poll(now: now), released)
        }
        if settledNow { settle(round) }
        return poll
    }

    /// Waits (spinning for `spinNanoseconds`, then parked) until `round` is released or times
    /// out, polling the barrier's deadlines.
    func wait(for round: UInt64, spinNanoseconds: UInt64) -> PhaseBarrier.Poll {
        while true {
            let now = clock.now()
            let poll = state.withLock { $0.barrier.roundID == round ? $0.barrier.poll(now: now) : .idle }
            guard case .waiting(let deadline) = poll else { return poll }
            var timeout = UInt64(clamping: max(0, (deadline - now).nanosecondsClamped)) + 1
            if !systemClock { timeout = min(timeout, 20_000_000) }
            _ = spinThenPark(spinNanoseconds, on: parker, timeoutNanoseconds: timeout) {
                settled.load(ordering: .acquiring) == round
            }
        }
    }

    /// The watchdog's look at the round: folds in the in-process shards that finished it,
    /// then checks the deadlines.
    func watch() -> PhaseBarrier.Poll {
        let now = clock.now()
        let (poll, round): (PhaseBarrier.Poll, UInt64) = state.withLock { s in
            if s.barrier.status == .waiting {
                for slot in s.probes where slot.doneRound.load(ordering: .acquiring) == s.barrier.roundID {
                    if let p = s.barrier.index(of: slot.id) { _ = s.barrier.arrive(at: p, now: now) }
                }
            }
            return (s.barrier.poll(now: now), s.barrier.roundID)
        }
        if case .timedOut = poll { settle(round) }
        return poll
    }

    /// When the waiting round (if any) times out; nil when none waits.
    var deadline: MonotonicInstant? { state.withLock { $0.barrier.deadline } }

    /// The remote answers of the last round, taken.
    func takeRemoteArrivals() -> [ShardID: RemoteArrival] {
        state.withLock { s in
            let r = s.remote
            s.remote.removeAll(keepingCapacity: true)
            return r
        }
    }

    /// The shards that had not arrived in the current round.
    var missing: [ShardID] { state.withLock { $0.barrier.missing } }

    /// Whether an in-process shard has not arrived in the current round (a lane, maybe the
    /// coordinator lane, is still in shard code).
    var localMissing: Bool {
        state.withLock { s in
            s.probes.contains { p in s.barrier.index(of: p.id) != nil && !s.barrier.hasArrived(p.id) }
        }
    }

    /// The shards still running the current round: in-process shards whose phase code runs
    /// now, and remote shards that have not answered.
    var stillRunning: [ShardID] {
        state.withLock { s in
            let local = Set(s.probes.map(\.id))
            let running = s.probes.filter { $0.running.load(ordering: .relaxed) }.map(\.id)
            let remote = s.barrier.missing.filter { !local.contains($0) }
            return (running + remote).sorted()
        }
    }

    /// Ends the round.
    func reset() { state.withLock { $0.barrier.reset() } }

    private func settle(_ round: UInt64) {
        settled.store(round, ordering: .releasing)
        parker.wakeAll()
    }
}
