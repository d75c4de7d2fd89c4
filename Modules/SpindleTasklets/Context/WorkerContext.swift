/// What a data lane sees while it runs a phase body.
///
/// Valid only inside the body it was passed to. Its lane's scratch slot is its own to read and
/// write; other lanes are reached through `shared` (use `Synchronization.Atomic` there) and
/// `barrier()`.
public struct WorkerContext<Shared: Sendable, Scratch: Sendable> {
    let launch: LaunchState<Shared, Scratch>

    /// This lane's index among all lanes (1…workerCount-1; lane 0 is the coordinator).
    public let lane: Int

    @inline(__always)
    init(launch: LaunchState<Shared, Scratch>, lane: Int) {
        self.launch = launch
        self.lane = lane
    }

    /// This lane's index among the data lanes (0…dataWorkerCount-1), i.e. `lane - 1`.
    public var dataIndex: Int { lane - 1 }

    /// Number of lanes, coordinator included.
    public var workerCount: Int { launch.laneCount }

    /// Number of data lanes (`workerCount - 1`).
    public var dataWorkerCount: Int { launch.laneCount - 1 }

    /// The tasklet's shared value.
    public var shared: Shared { launch.shared }

    /// This lane's scratch slot, read and written in place.
    public var scratch: Scratch {
        unsafeAddress { UnsafePointer(launch.scratch + lane) }
        nonmutating unsafeMutableAddress { launch.scratch + lane }
    }

    /// Whether the tasklet was cancelled (by the coordinator, a failure or fuel exhaustion).
    public var isCancelled: Bool { launch.control.isCancelled }

    /// Waits until every data lane still running this phase has arrived.
    ///
    /// Lanes that already returned from the body do not count; so a lane that calls
    /// `barrier()` once more than its peers is released when they finish, instead of hanging.
    /// - Throws: `TaskletError.cancelled` when the tasklet is cancelled before or while
    ///   waiting, a peer lane failed, or fuel ran out.
    public func barrier() throws(TaskletError) {
        try launch.control.barrier.wait()
    }

    /// Debits `amount` fuel for this lane; `0` is a no-op.
    /// - Throws: `TaskletError.fuelExhausted` naming this lane if the slice or pool cannot
    ///   cover `amount` (the tasklet then fails); `.cancelled` if the tasklet was cancelled.
    public func fuelCheckpoint(_ amount: UInt64) throws(TaskletError) {
        try launch.control.checkpoint(lane: lane, amount: amount)
    }
}
