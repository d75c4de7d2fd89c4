import SpindleKernel

/// What lane 0, the coordinator, sees: phases, scratch of every lane, output, cancel, fuel.
///
/// Valid only inside the coordinator closure it was passed to. It is deliberately not
/// `Sendable`, so a phase body cannot capture it: coordinator-only operations stay on lane 0.
public struct CoordinatorContext<Shared: Sendable, Scratch: Sendable> {
    let launch: LaunchState<Shared, Scratch>

    init(launch: LaunchState<Shared, Scratch>) { self.launch = launch }

    /// Number of lanes, coordinator included.
    public var workerCount: Int { launch.laneCount }

    /// Number of data lanes (`workerCount - 1`); zero for a one-lane tasklet.
    public var dataWorkerCount: Int { launch.laneCount - 1 }

    /// The tasklet's shared value.
    public var shared: Shared { launch.shared }

    /// A copy of `lane`'s scratch slot (0 = the coordinator's own).
    ///
    /// Read it between phases: after `parallelForWorkers` returns, every data lane's writes
    /// are visible. `lane` must be in `0..<workerCount`.
    public func scratch(_ lane: Int) -> Scratch {
        precondition(lane >= 0 && lane < launch.laneCount,
                     "scratch(\(lane)): lane out of range 0..<\(launch.laneCount)")
        return launch.scratch[lane]
    }

    /// A copy of data lane `index`'s scratch slot (`index` in `0..<dataWorkerCount`).
    public func dataScratch(_ index: Int) -> Scratch {
        precondition(index >= 0 && index < launch.laneCount - 1,
                     "dataScratch(\(index)): index out of range 0..<\(launch.laneCount - 1)")
        return launch.scratch[index + 1]
    }

    /// Mutates `lane`'s scratch slot in place (between phases only).
    public func withScratch<R>(_ lane: Int, _ body: (inout Scratch) throws -> R) rethrows -> R {
        precondition(lane >= 0 && lane < launch.laneCount,
                     "withScratch(\(lane)): lane out of range 0..<\(launch.laneCount)")
        return try body(&launch.scratch[lane])
    }

    /// Runs `body` once on every data lane in parallel and returns when all have finished.
    ///
    /// This is the phase boundary: afterwards every write a data lane made is visible to the
    /// coordinator. A one-lane tasklet has no data lanes, so nothing runs.
    /// - Throws: the launch's failure (`.laneFailed` or `.fuelExhausted`, naming the lane) if
    ///   a lane failed in this or an earlier phase; `.cancelled` if the tasklet was cancelled;
    ///   `.invalidConfiguration` if called after the launch ended.
    public func parallelForWorkers(
        _ body: @Sendable (WorkerContext<Shared, Scratch>) throws -> Void
    ) throws(TaskletError) {
        guard !launch.finished else {
            throw .invalidConfiguration("parallelForWorkers called after its launch ended (the context escaped the coordinator closure)")
        }
        let control = launch.control
        if control.isCancelled { throw control.firstFailure ?? .cancelled }
        if launch.laneCount > 1 {
            let start = launch.clock.now().nanoseconds
            withoutActuallyEscaping(body) { escapable in
                launch.body = escapable
                launch.core.runPhase(launch, dataLanes: launch.laneCount - 1)
                launch.body = nil
            }
            // The join ended when the last lane's body did: its end stamp (same clock) spares
            // the coordinator a clock read per phase.
            let end = max(start, control.lastPhaseEnd(dataLanes: launch.laneCount - 1))
            launch.joinWaitNanoseconds &+= end &- start
        }
        if control.isCancelled { throw control.firstFailure ?? .cancelled }
    }

    /// The coordinator's barrier: a phase-boundary check.
    ///
    /// It has one meaning everywhere: it returns once no data lane is running and every write
    /// of earlier phases is visible to the coordinator, then reports cancellation. Because
    /// `parallelForWorkers` already joins, that holds whenever the coordinator runs, so it
    /// never blocks; use it between phases to stop early when the tasklet was cancelled.
    /// (Data lanes synchronise among themselves with `WorkerContext.barrier()`.)
    /// - Throws: the launch's failure, or `.cancelled`, if the tasklet was cancelled.
    public func barrier() throws(TaskletError) {
        let control = launch.control
        if control.isCancelled { throw control.firstFailure ?? .cancelled }
    }

    /// Cancels the tasklet: data lanes see `isCancelled`, barriers break, the launch throws
    /// `TaskletError.cancelled` unless a lane failed first.
    public func cancel() { launch.control.cancel() }

    /// Whether the tasklet was cancelled.
    public var isCancelled: Bool { launch.control.isCancelled }

    /// Sets the tasklet's output bytes (the last call wins).
    public func setOutput(_ bytes: some Sequence<UInt8>) {
        launch.output = Array(bytes)
    }

    /// Debits `amount` fuel for the coordinator (lane 0); `0` is a no-op.
    /// - Throws: `TaskletError.fuelExhausted(lane: 0, …)` if it cannot be covered;
    ///   `.cancelled` if the tasklet was cancelled.
    public func fuelCheckpoint(_ amount: UInt64) throws(TaskletError) {
        try launch.control.checkpoint(lane: 0, amount: amount)
    }
}
