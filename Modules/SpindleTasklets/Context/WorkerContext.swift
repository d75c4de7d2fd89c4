/// What a data lane sees while it runs a phase body.
///
/// Valid only inside the body it was passed to: it points into the running launch (its
/// shared value, this lane's scratch slot and report), which the pool reuses for the next
/// launch. Its lane's scratch slot is its own to read and write; other lanes are reached
/// through `shared` (use `Synchronization.Atomic` there) and `barrier()`.
public struct WorkerContext<Shared: Sendable, Scratch: Sendable> {
    /// This lane's index among all lanes (1…workerCount-1; lane 0 is the coordinator).
    public let lane: Int
    /// Number of lanes, coordinator included.
    public let workerCount: Int
    @usableFromInline let sharedPointer: UnsafePointer<Shared>
    @usableFromInline let scratchPointer: UnsafeMutablePointer<Scratch>
    // unowned(unsafe): the pool owns the control block for its whole life and a context is
    // used only inside a phase body, while the pool runs it; a counted reference would bounce
    // the block's reference count between the lanes' cores on every phase.
    @usableFromInline unowned(unsafe) let control: LaunchControl
    @usableFromInline let report: UnsafeMutablePointer<LaneReport>
    @usableFromInline let fuelMode: FuelMode

    @inlinable @inline(__always)
    init(lane: Int, laneCount: Int, shared: UnsafePointer<Shared>, scratch: UnsafeMutablePointer<Scratch>,
         control: LaunchControl, report: UnsafeMutablePointer<LaneReport>, fuelMode: FuelMode) {
        self.lane = lane
        self.workerCount = laneCount
        self.sharedPointer = shared
        self.scratchPointer = scratch
        self.control = control
        self.report = report
        self.fuelMode = fuelMode
    }

    /// This lane's index among the data lanes (0…dataWorkerCount-1), i.e. `lane - 1` (-1 for
    /// the coordinator when it takes part: `parallelForWorkers(includingCoordinator: true)`).
    @inlinable
    public var dataIndex: Int { lane - 1 }

    /// Number of data lanes (`workerCount - 1`).
    @inlinable
    public var dataWorkerCount: Int { workerCount - 1 }

    /// The tasklet's shared value.
    @inlinable
    public var shared: Shared { sharedPointer.pointee }

    /// This lane's scratch slot, read and written in place.
    @inlinable
    public var scratch: Scratch {
        unsafeAddress { UnsafePointer(scratchPointer) }
        nonmutating unsafeMutableAddress { scratchPointer }
    }

    /// Whether the tasklet was cancelled (by the coordinator, a failure or fuel exhaustion).
    @inlinable
    public var isCancelled: Bool { control.isCancelled }

    /// Waits until every data lane still running this phase has arrived.
    ///
    /// Lanes that already returned from the body do not count; so a lane that calls
    /// `barrier()` once more than its peers is released when they finish, instead of hanging.
    /// - Throws: `TaskletError.cancelled` when the tasklet is cancelled before or while
    ///   waiting, a peer lane failed, or fuel ran out.
    @inlinable
    public func barrier() throws(TaskletError) {
        try control.barrier.wait()
    }

    /// Debits `amount` fuel for this lane; `0` is a no-op.
    /// - Throws: `TaskletError.fuelExhausted` naming this lane if the slice or pool cannot
    ///   cover `amount` (the tasklet then fails); `.cancelled` if the tasklet was cancelled.
    @inlinable
    public func fuelCheckpoint(_ amount: UInt64) throws(TaskletError) {
        try control.checkpoint(lane: lane, report: report, mode: fuelMode, amount: amount)
    }
}
