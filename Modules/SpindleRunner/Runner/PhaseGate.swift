import SpindleKernel
import Synchronization

/// One shard's finished phase, as the barrier records it.
struct PhaseOutcome: Sendable {
    var shard: ShardID
    var result: Result<PhaseWork, PhaseFailure>
    var duration: Duration
    var stamp: HLCTimestamp
}

/// The thin shell around `PhaseBarrier`: shard threads and transport callbacks arrive, the
/// coordinator thread waits (spinning briefly, then parking) until the round is released or
/// times out.
///
/// `@unchecked Sendable`: `barrier`, `outcomes` and `busy` are only touched with `lock` held.
final class PhaseGate: @unchecked Sendable {
    private let lock = ConditionLock()
    private var barrier: PhaseBarrier
    private var outcomes: [ShardID: PhaseOutcome] = [:]
    /// In-process shards whose phase code is running (possibly for an abandoned round).
    private var busy: Set<ShardID> = []
    /// Whether the coordinator thread waits for busy shards (then every local arrival wakes it).
    private var idleWaiter = false
    private let releasedRound = Atomic<UInt64>(0)
    private let clock: any SpindleClock
    private let spinIterations: Int

    init(barrier: PhaseBarrier, clock: any SpindleClock, spinIterations: Int) {
        self.barrier = barrier
        self.clock = clock
        self.spinIterations = spinIterations
    }

    /// Starts a round; `local` shards are marked busy until they arrive.
    func begin(tick: UInt64, phase: Phase, shards: [ShardID], local: [ShardID]) -> UInt64 {
        lock.withLock {
            outcomes.removeAll(keepingCapacity: true)
            busy.formUnion(local)
            return barrier.begin(tick: tick, phase: phase, shards: shards, now: clock.now())
        }
    }

    /// Records an outcome for `round` (ignored when stale, unexpected or duplicate).
    func arrive(_ outcome: PhaseOutcome, round: UInt64, fromLocalThread: Bool) {
        lock.lock()
        if fromLocalThread { busy.remove(outcome.shard) }
        let arrival = barrier.arrive(outcome.shard, round: round, now: clock.now())
        switch arrival {
        case .counted:
            outcomes[outcome.shard] = outcome
            if fromLocalThread && idleWaiter { lock.broadcast() }
        case .released:
            outcomes[outcome.shard] = outcome
            releasedRound.store(round, ordering: .releasing)
            lock.broadcast()
        case .stale, .unexpected, .duplicate:
            if fromLocalThread && idleWaiter { lock.broadcast() }
        }
        lock.unlock()
    }

    /// Records a failure of `shard` in whatever round is waiting (its connection closed).
    func fail(_ shard: ShardID, reason: String) {
        let round: UInt64? = lock.withLock {
            if case .waiting(let r) = barrier.state, !r.arrived.contains(shard) { return r.id }
            return nil
        }
        guard let round else { return }
        arrive(PhaseOutcome(shard: shard, result: .failure(PhaseFailure(reason: reason)),
                            duration: .zero, stamp: .zero),
               round: round, fromLocalThread: false)
    }

    /// Waits until `round` is released (returning every outcome) or times out.
    func waitForRound(_ round: UInt64) -> Result<[ShardID: PhaseOutcome], RunnerError> {
        var spins = 0
        while releasedRound.load(ordering: .acquiring) != round && spins < spinIterations { spins += 1 }
        lock.lock()
        defer { lock.unlock() }
        while true {
            switch barrier.poll(now: clock.now()) {
            case .released, .idle:
                barrier.reset()
                let taken = outcomes
                outcomes.removeAll(keepingCapacity: true)
                return .success(taken)
            case .timedOut(let error):
                barrier.reset()
                outcomes.removeAll(keepingCapacity: true)
                return .failure(error)
            case .waiting(let deadline):
                // Park until an arrival or the deadline; wake at least every 20 ms so a manual
                // clock moved by a test is noticed.
                let left = (deadline - clock.now()).nanosecondsClamped
                lock.wait(nanoseconds: min(max(left, 1), 20_000_000))
            }
        }
    }

    /// Waits until none of `shards` is busy or `deadline` passes; returns those still busy.
    func awaitIdle(_ shards: [ShardID], deadline: MonotonicInstant) -> [ShardID] {
        lock.lock()
        defer {
            idleWaiter = false
            lock.unlock()
        }
        while true {
            let still = busy.isEmpty ? [] : shards.filter { busy.contains($0) }
            let now = clock.now()
            if still.isEmpty || now >= deadline { return still.sorted() }
            idleWaiter = true
            let left = (deadline - now).nanosecondsClamped
            lock.wait(nanoseconds: min(max(left, 1), 20_000_000))
        }
    }

    func isBusy(_ shard: ShardID) -> Bool { lock.withLock { busy.contains(shard) } }
}
