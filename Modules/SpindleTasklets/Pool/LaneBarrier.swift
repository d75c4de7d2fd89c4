import SpindleSupport
import Synchronization

/// A reusable, cancellable barrier among the data lanes of one phase.
///
/// Sense reversal by generation: a lane reads the generation, arrives, and waits (spinning,
/// then parked) until the generation moves on, which the last arrival does after resetting the
/// arrival count. The count word packs the lanes still running the phase (high 32 bits) and
/// the arrivals of this round (low 32 bits), so a lane that returns from the phase body
/// *departs*: rounds then complete among the lanes still running instead of hanging forever
/// on a lane that will never arrive (like `Phaser.arriveAndDeregister`).
///
/// Breaking it (cancellation, a lane's failure, fuel exhaustion) wakes every waiter with
/// `TaskletError.cancelled`, and every later `wait()` in the same launch fails the same way.
@usableFromInline
final class LaneBarrier: @unchecked Sendable {
    // @unchecked Sendable: all shared state is atomic; `spinNanoseconds` is set at init.
    private let headerPad = HeaderPad()
    private let counts = Atomic<UInt64>(0)
    /// Keeps `counts` (every arrival writes it) off the line the waiters spin on, so arrivals
    /// do not take that line from them (docs/benchmarks.md, "Design measurements").
    private let padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private let generation = Atomic<UInt32>(0)
    private let broken = Atomic<Bool>(false)
    private let parker = Parker()
    let spinNanoseconds: UInt64
    /// The barrier of a nested launch, whose lanes run one after another on one thread: a
    /// round that does not complete at the first arrival never would.
    let sequential: Bool

    private static let arrivedMask: UInt64 = 0xFFFF_FFFF

    init(spinNanoseconds: UInt64, sequential: Bool = false) {
        self.spinNanoseconds = spinNanoseconds
        self.sequential = sequential
    }

    /// Unbreaks the barrier for a new launch.
    func resetForLaunch() {
        // Relaxed: called with no lane running; the first phase's ticket bump publishes it.
        // Skipped when already unbroken, so the line stays shared with the lanes.
        if broken.load(ordering: .relaxed) { broken.store(false, ordering: .relaxed) }
    }

    /// Starts a phase with `parties` lanes and no arrivals (only while no lane runs).
    func resetForPhase(parties: Int) {
        let fresh = UInt64(parties) << 32
        // Phases that used no barrier leave the word as it was: skip the store (and the
        // cache-line transfer it would cost) then.
        if counts.load(ordering: .relaxed) != fresh { counts.store(fresh, ordering: .relaxed) }
    }

    /// Whether the barrier was broken in this launch.
    var isBroken: Bool { broken.load(ordering: .sequentiallyConsistent) }

    /// Waits until every lane still running the phase has arrived.
    /// - Throws: `TaskletError.cancelled` if the barrier is or becomes broken first.
    @usableFromInline
    func wait() throws(TaskletError) {
        if broken.load(ordering: .relaxed) { throw .cancelled }
        let gen = generation.load(ordering: .acquiring)
        // One unconditional atomic add per arrival (no compare-exchange loop to lose under
        // contention). The old value says whether this arrival completes the round.
        let c = counts.add(1, ordering: .acquiringAndReleasing).oldValue
        let active = c >> 32
        if (c & Self.arrivedMask) + 1 >= active {
            // Every lane still running has arrived and waits for `generation`, so none can
            // arrive or depart until it moves: a plain store resets the round (the seq-cst
            // add below publishes it). Only a broken barrier lets an arrived lane leave early,
            // and a broken barrier stays broken (every wait throws) until the next launch
            // resets the word, so a departure this store may overwrite is never counted on.
            counts.store(active << 32, ordering: .relaxed)
            advance()
            return
        }
        if sequential {
            throw .invalidConfiguration("WorkerContext.barrier() in a nested launch: its lanes run one after another on the calling lane, so a barrier among them cannot complete")
        }
        spinThenPark(spinNanoseconds, on: parker) {
            generation.load(ordering: .sequentiallyConsistent) != gen
                || broken.load(ordering: .sequentiallyConsistent)
        }
        if generation.load(ordering: .acquiring) != gen { return }
        throw .cancelled
    }

    /// Removes a lane that finished its phase body; completes the round if it was the last
    /// lane the others were waiting for.
    func depart() {
        var c = counts.load(ordering: .relaxed)
        // The only lane of the phase leaves no one waiting: skip the atomic write (the next
        // phase resets the word anyway).
        if c == 1 << 32 { return }
        while true {
            let active = (c >> 32) &- 1
            let arrived = c & Self.arrivedMask
            // A round whose arrivals already reached the active count was completed by its
            // last arrival (only a broken barrier lets an arrived lane leave and depart).
            let completes = arrived > 0 && arrived == active
            let desired = active << 32 | (completes ? 0 : arrived)
            let (exchanged, original) = counts.compareExchange(
                expected: c, desired: desired, ordering: .acquiringAndReleasing)
            if exchanged {
                if completes { advance() }
                return
            }
            c = original
        }
    }

    /// Breaks the barrier: every waiter returns `TaskletError.cancelled` promptly.
    func breakAll() {
        broken.store(true, ordering: .sequentiallyConsistent)
        parker.wakeAll()
    }

    private func advance() {
        generation.add(1, ordering: .sequentiallyConsistent)
        parker.wakeAll()
    }
}
