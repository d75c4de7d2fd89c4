import Synchronization

/// The per-launch bookkeeping of a pool, allocated once and reset for every launch.
///
/// Launches on one pool run one at a time (the pool's gate), so one control block serves them
/// all: cancellation, the first failure, the barrier, the join counter, the shared fuel pool
/// and per-lane statistics.
final class LaunchControl: @unchecked Sendable {
    // @unchecked Sendable: shared state is atomic or behind a Mutex. The statistics buffer
    // holds one padded row per lane; each row is written only by its own lane during a phase
    // and read by the coordinator after the join (whose acquire makes the writes visible).
    // `fuelMode`, `laneCount` and the buffer pointer change only between launches, under the
    // pool's gate.
    let cancelled = Atomic<Bool>(false)
    private let failure = Mutex<TaskletError?>(nil)
    /// Whether `failure` holds an error: lets the common no-failure path skip the lock.
    private let failed = Atomic<Bool>(false)
    let barrier = LaneBarrier()
    let remaining = Atomic<Int>(0)
    let joinParker = Parker()
    private let fuelPool = Atomic<UInt64>(0)

    enum FuelMode { case unlimited, perLane, sharedPool }
    private(set) var fuelMode = FuelMode.unlimited
    private(set) var laneCount = 0

    /// One cache-line-sized row per lane: busy nanoseconds, fuel used, fuel left.
    private static let rowStride = 16
    private var stats: UnsafeMutablePointer<UInt64>
    private var statsCapacity: Int

    init() {
        statsCapacity = 8
        stats = .allocate(capacity: statsCapacity * Self.rowStride)
        stats.initialize(repeating: 0, count: statsCapacity * Self.rowStride)
    }

    deinit { stats.deallocate() }

    /// Prepares for a launch of `lanes` lanes (under the pool's gate, with no lane running).
    func reset(lanes: Int, fuel: FuelPolicy, spinNanoseconds: UInt64) {
        if lanes > statsCapacity {
            stats.deallocate()
            statsCapacity = max(lanes, statsCapacity * 2)
            stats = .allocate(capacity: statsCapacity * Self.rowStride)
            stats.initialize(repeating: 0, count: statsCapacity * Self.rowStride)
        }
        laneCount = lanes
        for lane in 0..<lanes {
            let row = stats + lane * Self.rowStride
            row[0] = 0
            row[1] = 0
            row[2] = 0
        }
        switch fuel {
        case .unlimited:
            fuelMode = .unlimited
        case .perLane(let budget):
            fuelMode = .perLane
            for lane in 0..<lanes {
                stats[lane * Self.rowStride + 2] = FuelPolicy.slice(of: budget, lane: lane, lanes: lanes)
            }
        case .sharedPool(let budget):
            fuelMode = .sharedPool
            fuelPool.store(budget, ordering: .relaxed)
        }
        if failed.load(ordering: .relaxed) {
            failure.withLock { $0 = nil }
            failed.store(false, ordering: .relaxed)
        }
        // Relaxed: no lane runs and no cancellation handle is attached yet; the first phase's
        // sequentially consistent ticket bump publishes these stores to the lanes.
        cancelled.store(false, ordering: .relaxed)
        barrier.resetForLaunch(spinNanoseconds: spinNanoseconds)
    }

    // MARK: Cancellation and failure

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

    // MARK: Fuel

    /// Debits `amount` for `lane` under the launch's fuel policy.
    func checkpoint(lane: Int, amount: UInt64) throws(TaskletError) {
        if amount == 0 { return }
        if cancelled.load(ordering: .relaxed) { throw .cancelled }
        let row = stats + lane * Self.rowStride
        switch fuelMode {
        case .unlimited:
            row[1] &+= amount
        case .perLane:
            let left = row[2]
            guard amount <= left else {
                throw exhausted(lane: lane, requested: amount, remaining: left)
            }
            row[2] = left - amount
            row[1] &+= amount
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
            row[1] &+= amount
        }
    }

    private func exhausted(lane: Int, requested: UInt64, remaining: UInt64) -> TaskletError {
        let error = TaskletError.fuelExhausted(lane: lane, requested: requested, remaining: remaining)
        // Only the first exhaustion fails the tasklet; later ones see a cancelled tasklet.
        return fail(error) ? error : .cancelled
    }

    // MARK: Statistics

    func addBusy(lane: Int, nanoseconds: UInt64) {
        stats[lane * Self.rowStride] &+= nanoseconds
    }

    func busyNanoseconds(lane: Int) -> UInt64 { stats[lane * Self.rowStride] }

    /// Records when `lane` finished its latest phase body (on the pool's clock).
    func setPhaseEnd(lane: Int, nanoseconds: UInt64) {
        stats[lane * Self.rowStride + 3] = nanoseconds
    }

    /// When the last of lanes `1...dataLanes` finished its latest phase body (after the join).
    func lastPhaseEnd(dataLanes: Int) -> UInt64 {
        var latest: UInt64 = 0
        for lane in 1...dataLanes { latest = max(latest, stats[lane * Self.rowStride + 3]) }
        return latest
    }

    func fuelUsed(lane: Int) -> UInt64 { stats[lane * Self.rowStride + 1] }
}
