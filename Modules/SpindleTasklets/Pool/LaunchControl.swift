import SpindleSupport
import Synchronization

/// The cross-lane state of a pool's launches, allocated once and reset for every launch.
///
/// Launches on one pool run one at a time (the pool's gate), so one control block serves them
/// all: cancellation, the first failure, the data lanes' barrier and the shared fuel pool.
/// Per-lane statistics live in each lane's `LaneReport`, on its own cache line.
@usableFromInline
final class LaunchControl: @unchecked Sendable {
    // @unchecked Sendable: shared state is atomic or behind a Mutex; the only plain field,
    // `fuelMode`, changes between launches, under the pool's gate, before the ticket bump
    // that starts the first phase.
    private let headerPad = HeaderPad()
    let cancelled = Atomic<Bool>(false)
    private let failure = Mutex<TaskletError?>(nil)
    /// Whether `failure` holds an error: lets the common no-failure path skip the lock.
    private let failed = Atomic<Bool>(false)
    @usableFromInline let barrier: LaneBarrier
    let joinParker = Parker()
    private let fuelPool = Atomic<UInt64>(0)
    // @exclusivity(unchecked): written only between launches under the pool's gate.
    @usableFromInline @exclusivity(unchecked) private(set) var fuelMode = FuelMode.unlimited

    /// The thread running the current launch's coordinator (0 between launches): a coordinator
    /// context used on any other thread has escaped its launch.
    @usableFromInline let coordinatorThread = Atomic<UInt>(0)

    init(spinNanoseconds: UInt64, sequential: Bool = false) {
        barrier = LaneBarrier(spinNanoseconds: spinNanoseconds, sequential: sequential)
    }

    /// Whether the calling thread runs the current launch's coordinator.
    @inlinable
    var calledByCoordinator: Bool {
        coordinatorThread.load(ordering: .acquiring) == SpindleThread.currentID
    }

    /// Prepares for a launch (under the pool's gate, with no lane running).
    ///
    /// Each store is skipped when the value is already right: lanes read these words, and a
    /// store would pull their lines back to this core on every launch for nothing.
    func reset(fuel: FuelPolicy) {
        let mode: FuelMode
        switch fuel {
        case .unlimited:
            mode = .unlimited
        case .perLane:
            mode = .perLane
        case .sharedPool(let budget):
            mode = .sharedPool
            fuelPool.store(budget, ordering: .relaxed)
        }
        if fuelMode != mode { fuelMode = mode }
        if failed.load(ordering: .relaxed) {
            failure.withLock { $0 = nil }
            failed.store(false, ordering: .relaxed)
        }
        // Relaxed: no lane runs and no cancellation handle is attached yet; the first phase's
        // sequentially consistent ticket bump publishes these stores to the lanes.
        if cancelled.load(ordering: .relaxed) { cancelled.store(false, ordering: .relaxed) }
        barrier.resetForLaunch()
    }

    // MARK: Cancellation and failure

    @usableFromInline
    var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    /// Cancels the launch: flags it and breaks the barrier.
    func cancel() {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        barrier.breakAll()
    }

    /// Records `error` as the launch's failure if it is the first, then cancels.
    /// - Returns: whether `error` was the first failure.
    @discardableResult
    func fail(_ error: TaskletError) -> Bool {
        let first = failure.withLock { slot -> Bool in
            guard slot == nil else { return false }
            slot = error
            failed.store(true, ordering: .releasing)
            return true
        }
        cancel()
        return first
    }

    /// Records what a lane's closure threw: `.cancelled` only cancels, other tasklet errors
    /// pass through, anything else becomes `.laneFailed(lane:error:)`.
    @usableFromInline
    func recordThrown(_ error: any Error, lane: Int) {
        if let taskletError = error as? TaskletError {
            if taskletError.isCancellation { cancel() } else { fail(taskletError) }
        } else {
            fail(.laneFailed(lane: lane, error: error))
        }
    }

    /// The first failure of this launch, if any.
    var firstFailure: TaskletError? {
        failed.load(ordering: .acquiring) ? failure.withLock { $0 } : nil
    }

    /// The error a phase boundary reports once the launch is cancelled.
    @usableFromInline
    var cancellationError: TaskletError { firstFailure ?? .cancelled }

    // MARK: Fuel

    /// Debits `amount` for `lane`, whose report is `report`, under the launch's fuel policy.
    /// Only `lane`'s own thread calls this for its report.
    @usableFromInline
    func checkpoint(lane: Int, report: UnsafeMutablePointer<LaneReport>, mode: FuelMode,
                    amount: UInt64) throws(TaskletError) {
        if amount == 0 { return }
        if cancelled.load(ordering: .relaxed) { throw .cancelled }
        switch mode {
        case .unlimited:
            break
        case .perLane:
            let left = report.pointee.fuelLeft
            guard amount <= left else {
                throw exhausted(lane: lane, requested: amount, remaining: left)
            }
            report.pointee.fuelLeft = left - amount
        case .sharedPool:
            var left = fuelPool.load(ordering: .relaxed)
            while true {
                guard amount <= left else {
                    throw exhausted(lane: lane, requested: amount, remaining: left)
                }
                let (exchanged, original) = fuelPool.compareExchange(
                    expected: left, desired: left - amount, ordering: .relaxed)
                if exchanged { break }
                left = original
            }
        }
        report.pointee.fuelUsed &+= amount
    }

    private func exhausted(lane: Int, requested: UInt64, remaining: UInt64) -> TaskletError {
        let error = TaskletError.fuelExhausted(lane: lane, requested: requested, remaining: remaining)
        // Only the first exhaustion fails the tasklet; later ones see a cancelled tasklet.
        return fail(error) ? error : .cancelled
    }
}
