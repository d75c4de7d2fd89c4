import SpindleKernel

/// What lane 0, the coordinator, sees: phases, scratch of every lane, output, cancel, fuel.
///
/// Valid only inside the coordinator closure it was passed to. It is deliberately not
/// `Sendable`, so a phase body cannot capture it: coordinator-only operations stay on lane 0.
public struct CoordinatorContext<Shared: Sendable, Scratch: Sendable> {
    @usableFromInline let core: PoolCore
    /// The launch this context belongs to (the pool's frame serves every launch in turn).
    @usableFromInline let generation: UInt64

    @usableFromInline
    init(core: PoolCore) {
        self.core = core
        generation = core.frame.generation
    }

    @usableFromInline
    var frame: LaunchFrame { core.frame }

    /// Whether this context may act: its launch is running and this is its coordinator's
    /// thread. (The thread is checked first: another thread must not read the frame, which
    /// the pool's next launch may be writing.)
    @inlinable
    var isLive: Bool { core.control.calledByCoordinator && frame.isCurrent(generation) }

    /// Number of lanes, coordinator included.
    public var workerCount: Int { frame.laneCount }

    /// Number of data lanes (`workerCount - 1`); zero for a one-lane tasklet.
    public var dataWorkerCount: Int { frame.laneCount - 1 }

    /// The tasklet's shared value.
    @inlinable
    public var shared: Shared {
        precondition(isLive, "CoordinatorContext.shared used after its launch ended or off its coordinator's thread")
        return frame.state.pointee.shared.unsafelyUnwrapped.assumingMemoryBound(to: Shared.self).pointee
    }

    /// A copy of `lane`'s scratch slot (0 = the coordinator's own).
    ///
    /// Read it between phases: after `parallelForWorkers` returns, every data lane's writes
    /// are visible. `lane` must be in `0..<workerCount`.
    @inlinable
    public func scratch(_ lane: Int) -> Scratch {
        slot(lane, "scratch").pointee
    }

    /// A copy of data lane `index`'s scratch slot (`index` in `0..<dataWorkerCount`).
    @inlinable
    public func dataScratch(_ index: Int) -> Scratch {
        precondition(index >= 0 && index < frame.laneCount - 1,
                     "dataScratch(\(index)): index out of range 0..<\(frame.laneCount - 1)")
        return slot(index + 1, "dataScratch").pointee
    }

    /// Mutates `lane`'s scratch slot in place (between phases only).
    @inlinable
    public func withScratch<R>(_ lane: Int, _ body: (inout Scratch) throws -> R) rethrows -> R {
        try body(&slot(lane, "withScratch").pointee)
    }

    @usableFromInline
    func slot(_ lane: Int, _ caller: StaticString) -> UnsafeMutablePointer<Scratch> {
        precondition(isLive, "CoordinatorContext.\(caller) used after its launch ended or off its coordinator's thread")
        precondition(lane >= 0 && lane < frame.laneCount,
                     "\(caller)(\(lane)): lane out of range 0..<\(frame.laneCount)")
        return frame.scratchSlot(lane).assumingMemoryBound(to: Scratch.self)
    }

    /// Runs `body` once on every data lane in parallel and returns when all have finished.
    ///
    /// This is the phase boundary: afterwards every write a data lane made is visible to the
    /// coordinator. A one-lane tasklet has no data lanes, so nothing runs — unless
    /// `includingCoordinator`: then the coordinator runs `body` too, as lane 0 (with its own
    /// scratch slot and fuel, and counted in the lanes' barrier), so every lane computes. Its
    /// `WorkerContext` has `lane == 0`; use `lane` and `workerCount` to split work then
    /// (`dataIndex` is -1 on lane 0).
    /// - Throws: the launch's failure (`.laneFailed` or `.fuelExhausted`, naming the lane) if
    ///   a lane failed in this or an earlier phase; `.cancelled` if the tasklet was cancelled;
    ///   `.invalidConfiguration` if called after the launch ended or from another thread.
    @inlinable
    public func parallelForWorkers(
        includingCoordinator: Bool = false,
        _ body: @Sendable (WorkerContext<Shared, Scratch>) throws -> Void
    ) throws(TaskletError) {
        guard isLive else {
            throw .invalidConfiguration("parallelForWorkers called after its launch ended or off its coordinator's thread (the context escaped the coordinator closure)")
        }
        let control = frame.control
        if control.isCancelled { throw control.cancellationError }
        if frame.laneCount > 1 || includingCoordinator {
            let core = self.core
            let entry = frame.laneEntry(for: ObjectIdentifier(PhaseBody<Shared, Scratch>.self)) {
                LaneEntry { order, body, report, control, lane in
                    let context = WorkerContext<Shared, Scratch>(
                        lane: lane, laneCount: Int(order.pointee.laneCount),
                        shared: order.pointee.shared.unsafelyUnwrapped.assumingMemoryBound(to: Shared.self),
                        scratch: order.pointee.scratch.unsafelyUnwrapped.assumingMemoryBound(to: Scratch.self),
                        control: control, report: report,
                        fuelMode: FuelMode(rawValue: order.pointee.fuelMode) ?? .unlimited)
                    do {
                        try body.assumingMemoryBound(to: PhaseBody<Shared, Scratch>.self).pointee.run(context)
                    } catch {
                        control.recordThrown(error, lane: lane)
                    }
                }
            }
            withoutActuallyEscaping(body) { body in
                if includingCoordinator {
                    let frame = self.frame
                    let own = WorkerContext<Shared, Scratch>(
                        lane: 0, laneCount: frame.laneCount,
                        shared: frame.state.pointee.shared.unsafelyUnwrapped.assumingMemoryBound(to: Shared.self),
                        scratch: frame.scratchSlot(0).assumingMemoryBound(to: Scratch.self),
                        control: control, report: frame.coordinatorReport, fuelMode: control.fuelMode)
                    core.runPhase(entry: entry, body: PhaseBody(run: body)) {
                        do { try body(own) } catch { control.recordThrown(error, lane: 0) }
                    }
                } else {
                    core.runPhase(entry: entry, body: PhaseBody(run: body))
                }
            }
        }
        if control.isCancelled { throw control.cancellationError }
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
        let control = frame.control
        if control.isCancelled { throw control.cancellationError }
    }

    /// Cancels the tasklet: data lanes see `isCancelled`, barriers break, the launch throws
    /// `TaskletError.cancelled` unless a lane failed first.
    public func cancel() {
        // A context that escaped its launch must not cancel the pool's next one.
        if isLive { frame.control.cancel() }
    }

    /// Whether the tasklet was cancelled.
    public var isCancelled: Bool { frame.control.isCancelled }

    /// Sets the tasklet's output bytes (the last call wins).
    public func setOutput(_ bytes: some Sequence<UInt8>) {
        precondition(isLive, "CoordinatorContext.setOutput used after its launch ended or off its coordinator's thread")
        frame.state.pointee.output = Array(bytes)
    }

    /// Debits `amount` fuel for the coordinator (lane 0); `0` is a no-op.
    /// - Throws: `TaskletError.fuelExhausted(lane: 0, …)` if it cannot be covered;
    ///   `.cancelled` if the tasklet was cancelled; `.invalidConfiguration` from a context that
    ///   escaped its launch (it must not spend a later launch's fuel).
    public func fuelCheckpoint(_ amount: UInt64) throws(TaskletError) {
        guard isLive else {
            throw .invalidConfiguration("fuelCheckpoint called after its launch ended or off its coordinator's thread (the context escaped the coordinator closure)")
        }
        try frame.control.checkpoint(lane: 0, report: frame.coordinatorReport, mode: frame.control.fuelMode,
                                     amount: amount)
    }
}

