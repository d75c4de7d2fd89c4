import CSpindleCycles
import SpindleKernel
import SpindleSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One persistent pool thread: its lane number, its order and report lines, its parker.
final class WorkerSlot: @unchecked Sendable {
    // @unchecked Sendable: `lines` follows the ticket/done protocol (see `PhaseOrder`,
    // `LaneReport`) and `parker` is thread-safe. `thread` is the coordinator's: written and
    // read only under the pool's gate (or by shutdown, under it).
    let lane: Int
    let lines = LaneLines()
    let parker = Parker()
    var thread: SpindleThread?

    init(lane: Int) { self.lane = lane }
}

/// The pool's machinery: persistent lane threads, the launch gate, phases, the async runner.
///
/// ```
///  coordinator (caller)               pool thread k (lane k)
///  ─────────────────────              ──────────────────────
///  gate.lock, frame.begin
///  coordinator closure ─┐
///    parallelForWorkers │ order[k] = entry, body, shared, scratch
///      doorbell[k] += 1 ─────────────▶ spin/park until the doorbell changes
///      spin/park until  │             entry.run(k)  (types restored)
///      report[k].done ◀─┼──────────── report[k] = phase end, fuel; done = ticket
///  build result, gate.unlock          back to spin/park
/// ```
/// Starting a phase moves one cache line to each lane (its order, doorbell included) and the
/// join moves one back (its report); nothing else is written by both sides.
@usableFromInline
final class PoolCore: @unchecked Sendable {
    // @unchecked Sendable: `slots` and `frame` are used only by the launch that holds `gate`
    // (pool threads reach their own slot, captured at start); a slot's lines follow their
    // ticket/done protocol. Everything else is atomic, a Mutex, or immutable.
    private let headerPad = HeaderPad()
    @usableFromInline let clock: any SpindleClock
    /// How `now()` reads the pool's clock. With the system clock the pool reads the CPU's
    /// cycle counter where it can stand in for the monotonic clock, else the monotonic clock
    /// directly (no existential call, no `Duration` arithmetic); any other clock is called.
    @usableFromInline let timeSource: TimeSource
    /// Nanoseconds per tick of `now()` (1 unless `timeSource` is `.cycles`).
    @usableFromInline let nanosecondsPerTick: Double

    @usableFromInline
    enum TimeSource: UInt8 { case cycles, monotonic, configured }
    let spinNanoseconds: UInt64
    let maxLanes: Int
    let threadName: String
    @usableFromInline let control: LaunchControl
    @usableFromInline let frame: LaunchFrame
    /// Runs launches one at a time, in the order they asked (FIFO, so concurrent callers share
    /// the pool fairly).
    private let gate: FairGate
    /// A core for nested launches: it starts no thread and runs a launch's lanes one after
    /// another on the calling thread (the lane that launched).
    @usableFromInline let sequential: Bool
    /// The configuration, for the sequential cores nested launches use.
    let configuration: TaskletPool.Configuration
    /// Whether a launch runs on this core now (sequential cores are reused only when idle).
    private let busy = Atomic<Bool>(false)
    // @exclusivity(unchecked) here and below: only the launch that holds the gate touches
    // these, so accesses never overlap, and the dynamic check would sit on every launch.
    @exclusivity(unchecked) private var slots: [WorkerSlot] = []
    /// What the coordinator needs of each slot during a phase, as plain pointers (indexing
    /// `slots` would retain and release a slot per access, inside the join's spin loop).
    /// Entries stay valid while `slots` holds their slot.
    @exclusivity(unchecked) private var joinList = UnsafeMutablePointer<JoinEntry>.allocate(capacity: 0)
    @exclusivity(unchecked) private var joinCapacity = 0
    /// A sequential core's lanes' lines (it has slots but no threads).
    @exclusivity(unchecked) private var sequentialLines: [LaneLines] = []

    struct JoinEntry {
        let order: UnsafeMutablePointer<PhaseOrder>
        let doorbell: UnsafeMutablePointer<Atomic<UInt32>>
        let body: UnsafeMutableRawPointer
        let report: UnsafeMutablePointer<LaneReport>
        let parker: Unmanaged<Parker>
        /// The ticket of the phase this lane was last given: its report's `done` reaches it
        /// when the lane finished that phase.
        var expected: UInt32
        /// The lane's busy time in the running launch, in ticks of `now()`, summed by the
        /// coordinator at each join.
        var busy: UInt64 = 0
    }
    private let stopping = Atomic<Bool>(false)
    /// How often spinning threads yield (see `spinThenPark`): every 1 024 checks, or every 64
    /// once the pool has more threads (its lane threads and a coordinator) than the machine
    /// has cores, where a spinning lane holds a core that the lane it waits for needs.
    private let yieldMask = Atomic<UInt32>(1023)
    private static let onlineCores = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    private let closed = Atomic<Bool>(false)
    private let startedThreads = Atomic<Int>(0)

    private struct AsyncRunner {
        var queue: [@Sendable () -> Void] = []
        var thread: SpindleThread?
        var stopping = false
    }
    private let runner = Mutex(AsyncRunner())
    private let runnerPending = Atomic<Int>(0)
    private let runnerStopping = Atomic<Bool>(false)
    private let runnerParker = Parker()

    init(configuration: TaskletPool.Configuration, sequential: Bool = false) {
        self.configuration = configuration
        self.sequential = sequential
        clock = configuration.clock
        if configuration.clock is SystemClock, let scale = CycleClock.nanosecondsPerCycle {
            timeSource = .cycles
            nanosecondsPerTick = scale
        } else {
            timeSource = configuration.clock is SystemClock ? .monotonic : .configured
            nanosecondsPerTick = 1
        }
        spinNanoseconds = configuration.waitPolicy.spinNanoseconds
        maxLanes = configuration.maxLanes
        threadName = configuration.threadName
        control = LaunchControl(spinNanoseconds: spinNanoseconds, sequential: sequential)
        frame = LaunchFrame(control: control)
        gate = FairGate(spinNanoseconds: spinNanoseconds)
    }

    deinit { joinList.deallocate() }

    /// Threads this pool has started (lane threads plus the async runner).
    var threadCount: Int { startedThreads.load(ordering: .relaxed) }

    @usableFromInline
    var ownerMark: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// The pool clock's reading, in ticks of `nanosecondsPerTick`: every stamp a launch takes
    /// and compares, converted to nanoseconds only in the durations it reports.
    @inlinable @inline(__always)
    func now() -> UInt64 {
        switch timeSource {
        case .cycles: return spindle_cycles()
        case .monotonic: return monotonicNanoseconds()
        case .configured: return clock.now().nanoseconds
        }
    }

    /// `ticks` of `now()` in nanoseconds.
    @inline(__always)
    func nanoseconds(_ ticks: UInt64) -> UInt64 {
        timeSource == .cycles ? UInt64(Double(ticks) * nanosecondsPerTick) : ticks
    }

    // MARK: Launch

    /// Runs a launch: `begin` (validation, gate, threads, reset), lane 0 on the caller's
    /// thread, then `finish` (result or error, gate released).
    ///
    /// Inlinable, like `parallelForWorkers`: specialised in the caller's module for its
    /// `Shared` and `Scratch`, a launch looks up no generic metadata and calls its closures
    /// without re-abstraction thunks. Everything that does not need the types stays behind
    /// the non-generic `begin`, `runPhase` and `finish`.
    @inlinable
    func launch<Shared: Sendable, Scratch: Sendable>(
        workers: Int, shared: Shared, scratch factory: (Int) -> Scratch, fuel: FuelPolicy,
        cancellation: TaskletCancellation?,
        coordinator: (CoordinatorContext<Shared, Scratch>) throws -> Void
    ) throws(TaskletError) -> TaskletResult {
        if let role = LaneOwnership.role(of: ownerMark) {
            guard role == .lane else {
                throw .invalidConfiguration("a scratch factory launched on the pool whose launch it is preparing; launch from the coordinator or a lane instead")
            }
            // A lane of this pool launching on it would wait for itself: the launch runs on a
            // sequential core instead, its lanes one after another on this thread.
            let nested = PoolCore.sequentialCore(for: self)
            defer { nested.release() }
            return try nested.launch(workers: workers, shared: shared, scratch: factory, fuel: fuel,
                                     cancellation: cancellation, coordinator: coordinator)
        }
        try begin(workers: workers, fuel: fuel, cancellation: cancellation,
                  scratchSize: MemoryLayout<Scratch>.size, scratchAlignment: MemoryLayout<Scratch>.alignment)
        if control.isCancelled {
            // Cancelled before it started (its cancellation handle): nothing runs.
            return try finish(elapsedTicks: 0, coordinatorError: nil, cancellation: cancellation)
        }
        let frame = self.frame
        runAsFactory {
            for lane in 0..<workers {
                frame.scratchSlot(lane).bindMemory(to: Scratch.self, capacity: 1).initialize(to: factory(lane))
            }
        }
        var coordinatorError: (any Error)?
        let start = now()
        withUnsafePointer(to: shared) { sharedPointer in
            frame.state.pointee.shared = UnsafeRawPointer(sharedPointer)
            runAsCoordinator {
                do {
                    try coordinator(CoordinatorContext(core: self))
                } catch {
                    coordinatorError = error
                }
            }
        }
        let elapsed = now() &- start
        for lane in 0..<workers {
            frame.scratchSlot(lane).assumingMemoryBound(to: Scratch.self).deinitialize(count: 1)
        }
        return try finish(elapsedTicks: elapsed, coordinatorError: coordinatorError, cancellation: cancellation)
    }

    /// Runs `body` (the scratch factory) with the calling thread marked as preparing a launch
    /// of this pool, so a launch from it is refused instead of deadlocking on the gate.
    @usableFromInline
    func runAsFactory(_ body: () -> Void) {
        var ownership = LaneOwnership(pool: ownerMark, outer: pthread_getspecific(laneOwnerKey), factory: true)
        withUnsafeMutablePointer(to: &ownership) { link in
            pthread_setspecific(laneOwnerKey, link)
            body()
            pthread_setspecific(laneOwnerKey, link.pointee.outer)
        }
    }

    /// A sequential core for a nested launch on `pool` from this thread: the thread's cached
    /// one when it is idle, else a new one (a launch nested in a nested launch).
    @usableFromInline
    static func sequentialCore(for pool: PoolCore) -> PoolCore {
        if let raw = pthread_getspecific(sequentialCoreKey) {
            let cached = Unmanaged<PoolCore>.fromOpaque(raw).takeUnretainedValue()
            if cached.configuration.maxLanes >= pool.configuration.maxLanes, cached.claim() { return cached }
        }
        let core = PoolCore(configuration: pool.configuration, sequential: true)
        _ = core.claim()
        if pthread_getspecific(sequentialCoreKey) == nil {
            pthread_setspecific(sequentialCoreKey, Unmanaged.passRetained(core).toOpaque())
        }
        return core
    }

    /// Marks a sequential core as running a launch; false if it already is.
    func claim() -> Bool {
        busy.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    /// Marks a sequential core idle again.
    @usableFromInline
    func release() { busy.store(false, ordering: .releasing) }

    /// Runs `body` with the calling thread marked as running a lane of this pool (so a nested
    /// launch on it is refused instead of deadlocking).
    @usableFromInline
    func runAsCoordinator(_ body: () -> Void) {
        var ownership = LaneOwnership(pool: ownerMark, outer: pthread_getspecific(laneOwnerKey))
        withUnsafeMutablePointer(to: &ownership) { link in
            pthread_setspecific(laneOwnerKey, link)
            body()
            pthread_setspecific(laneOwnerKey, link.pointee.outer)
        }
    }

    /// Validates a launch, takes the gate and prepares the pool for it. On a throw the gate
    /// is not held.
    @usableFromInline
    func begin(workers: Int, fuel: FuelPolicy, cancellation: TaskletCancellation?,
                       scratchSize: Int, scratchAlignment: Int) throws(TaskletError) {
        guard workers >= 1 else {
            throw .invalidConfiguration("workers = \(workers): a tasklet needs at least 1 lane (lane 0 is the coordinator)")
        }
        guard workers <= maxLanes else {
            throw .invalidConfiguration("workers = \(workers) exceeds the pool's maxLanes = \(maxLanes)")
        }
        guard workers <= Int(UInt16.max) else {
            throw .invalidConfiguration("workers = \(workers) exceeds the largest tasklet, \(UInt16.max) lanes")
        }
        gate.lock()
        do throws(TaskletError) {
            guard !closed.load(ordering: .sequentiallyConsistent) else {
                throw .invalidConfiguration("the tasklet pool is shut down")
            }
            try ensureThreads(workers - 1)
        } catch {
            gate.unlock()
            throw error
        }
        control.reset(fuel: fuel)
        frame.begin(lanes: workers, fuel: fuel, scratchSize: scratchSize, scratchAlignment: scratchAlignment)
        control.coordinatorThread.store(SpindleThread.currentID, ordering: .releasing)
        cancellation?.attach(control)
    }

    /// Ends the running launch: its result, or the error that ended it. Releases the gate.
    @usableFromInline
    func finish(elapsedTicks elapsed: UInt64, coordinatorError: (any Error)?,
                        cancellation: TaskletCancellation?) throws(TaskletError) -> TaskletResult {
        cancellation?.detach()
        let frame = self.frame
        frame.end()
        control.coordinatorThread.store(0, ordering: .releasing)
        defer { gate.unlock() }
        if let failure = control.firstFailure { throw failure }
        if let coordinatorError {
            if let taskletError = coordinatorError as? TaskletError { throw taskletError }
            throw .laneFailed(lane: 0, error: coordinatorError)
        }
        if control.isCancelled { throw .cancelled }

        let lanes = frame.laneCount
        let coordinatorBusy = nanoseconds(elapsed &- min(elapsed, frame.state.pointee.joinWaitTicks))
        let coordinatorFuel = frame.coordinatorReport.pointee.fuelUsed
        var fuelUsed = coordinatorFuel
        // Data lanes reset their report on a launch's first phase; without one, a report
        // still holds an earlier launch's figures.
        let ranPhases = frame.state.pointee.phases > 0
        let joinList = self.joinList
        // Reuse the previous result's buffer when its caller has let go of it (then the frame
        // holds the only reference): a steady-state launch allocates nothing.
        var statistics = frame.state.pointee.statistics
        frame.state.pointee.statistics = []
        statistics.removeAll(keepingCapacity: true)
        statistics.reserveCapacity(lanes)
        statistics.append(LaneStatistics(busyNanoseconds: coordinatorBusy, fuelUsed: coordinatorFuel))
        for lane in 1..<max(lanes, 1) {
            let report = joinList[lane - 1].report
            let busy = ranPhases ? nanoseconds(joinList[lane - 1].busy) : 0
            let used = ranPhases ? report.pointee.fuelUsed : 0
            fuelUsed &+= used
            statistics.append(LaneStatistics(busyNanoseconds: busy, fuelUsed: used))
        }
        frame.state.pointee.statistics = statistics
        return TaskletResult(output: frame.state.pointee.output, fuelUsed: fuelUsed, lanes: statistics,
                             elapsed: .nanoseconds(Int64(clamping: nanoseconds(elapsed))))
    }

    /// Runs one phase on every data lane of the running launch and returns when all have
    /// finished. `entry` runs a lane; `body` (a `PhaseBody`) goes into every lane's order.
    /// With `coordinatorLane`, the coordinator runs its own share of the phase (lane 0's body)
    /// between the fork and the join, and counts in the data lanes' barrier.
    @inlinable
    func runPhase<Body>(entry: Unmanaged<LaneEntry>, body: Body, coordinatorLane: (() -> Void)? = nil) {
        precondition(MemoryLayout<Body>.size <= 16 && MemoryLayout<Body>.alignment <= 8,
                     "a phase body must fit PhaseOrder.bodyStorage")
        let dataLanes = preparePhase(entry: entry, coordinatorJoins: coordinatorLane != nil)
        for index in 0..<dataLanes {
            phaseBodySlot(index).initializeMemory(as: Body.self, repeating: body, count: 1)
        }
        forkAndJoin(dataLanes: dataLanes, coordinatorLane: coordinatorLane)
        for index in 0..<dataLanes {
            phaseBodySlot(index).assumingMemoryBound(to: Body.self).deinitialize(count: 1)
        }
    }

    /// Data lane `index`'s room for the phase body, in its order line.
    @usableFromInline
    func phaseBodySlot(_ index: Int) -> UnsafeMutableRawPointer { joinList[index].body }

    /// Writes every data lane's order for a phase (all but the body and the ticket) and
    /// returns the number of data lanes.
    @usableFromInline
    func preparePhase(entry: Unmanaged<LaneEntry>, coordinatorJoins: Bool = false) -> Int {
        let frame = self.frame
        let state = frame.state
        let dataLanes = state.pointee.laneCount - 1
        let firstPhase = state.pointee.phases == 0
        state.pointee.phases += 1
        control.barrier.resetForPhase(parties: dataLanes + (coordinatorJoins ? 1 : 0))
        let laneCount = UInt16(state.pointee.laneCount)
        let fuelMode = control.fuelMode.rawValue
        let shared = state.pointee.shared
        let joinList = self.joinList
        for index in 0..<dataLanes {
            let order = joinList[index].order
            order.pointee.laneCount = laneCount
            order.pointee.fuelMode = fuelMode
            order.pointee.firstPhase = firstPhase
            if order.pointee.coordinatorJoins != coordinatorJoins { order.pointee.coordinatorJoins = coordinatorJoins }
            order.pointee.entry = entry
            order.pointee.shared = shared
            order.pointee.scratch = frame.scratchSlot(index + 1)
            if firstPhase {
                order.pointee.fuelBudget = frame.fuelBudget(lane: index + 1)
                joinList[index].busy = 0
            }
        }
        return dataLanes
    }

    /// Starts the prepared phase on every data lane, runs the coordinator's own share if it
    /// has one, and waits until all have finished. A sequential core runs the lanes one after
    /// another on this thread instead.
    @usableFromInline
    func forkAndJoin(dataLanes: Int, coordinatorLane: (() -> Void)? = nil) {
        if sequential { return runSequentially(dataLanes: dataLanes, coordinatorLane: coordinatorLane) }
        let joinList = self.joinList
        // The fork stamp starts the busy time of every lane that was spinning. It is read
        // before the doorbells ring: read after, a coordinator preempted in between (say by
        // the lane it just woke, on its own core) would stamp after the lane had finished.
        let start = now()
        for index in 0..<dataLanes {
            joinList[index].expected = joinList[index].doorbell.pointee.add(1, ordering: .sequentiallyConsistent).newValue
            joinList[index].parker._withUnsafeGuaranteedRef { $0.wakeAll() }
        }
        var ownEnd = start
        if let coordinatorLane {
            coordinatorLane()
            if dataLanes > 0 { control.barrier.depart() }
            ownEnd = now()
        }
        spinThenPark(spinNanoseconds, yieldMask: yieldMask.load(ordering: .relaxed), on: control.joinParker) {
            var index = 0
            while index < dataLanes {
                if joinList[index].report.pointee.done.load(ordering: .sequentiallyConsistent) != joinList[index].expected {
                    return false
                }
                index += 1
            }
            return true
        }
        // The join ended when the last lane's body did: its end stamp (same clock) spares the
        // coordinator a clock read per phase. It waited only from the end of its own share.
        var end = ownEnd
        for index in 0..<dataLanes {
            let report = joinList[index].report
            let laneEnd = report.pointee.phaseEnd
            let laneStart = max(start, report.pointee.wokeAt)
            joinList[index].busy &+= laneEnd &- min(laneEnd, laneStart)
            end = max(end, laneEnd)
        }
        frame.state.pointee.joinWaitTicks &+= end &- ownEnd
    }

    /// A sequential core's phase: the coordinator's share, then each data lane's, on this
    /// thread. The coordinator's busy time excludes the lanes' bodies (they count as its
    /// join wait), as on a real fork.
    private func runSequentially(dataLanes: Int, coordinatorLane: (() -> Void)?) {
        let joinList = self.joinList
        let parties = dataLanes + (coordinatorLane == nil ? 0 : 1)
        if let coordinatorLane {
            coordinatorLane()
            if parties > 1 { control.barrier.depart() }
        }
        let start = now()
        for index in 0..<dataLanes {
            let lines = sequentialLines[index]
            let order = lines.order
            let report = lines.report
            if order.pointee.firstPhase { report.pointee.resetFuel(budget: order.pointee.fuelBudget) }
            let laneStart = now()
            order.pointee.entry.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.run(order, lines.body, report, control, index + 1) }
            let laneEnd = now()
            report.pointee.phaseEnd = laneEnd
            joinList[index].busy &+= laneEnd &- laneStart
            if parties > 1 { control.barrier.depart() }
        }
        frame.state.pointee.joinWaitTicks &+= now() &- start
    }

    /// Starts lane threads until there are `count` (under the gate).
    private func ensureThreads(_ count: Int) throws(TaskletError) {
        while slots.count < count {
            let slot = WorkerSlot(lane: slots.count + 1)
            if sequential {
                sequentialLines.append(slot.lines)
            } else {
                slot.thread = try SpindleThread.startPoolThread(name: threadName) { [self] in self.laneThread(slot) }
            }
            if slots.count == joinCapacity {
                let grown = UnsafeMutablePointer<JoinEntry>.allocate(capacity: max(8, joinCapacity * 2))
                grown.moveInitialize(from: joinList, count: joinCapacity)
                joinList.deallocate()
                joinList = grown
                joinCapacity = max(8, joinCapacity * 2)
            }
            (joinList + slots.count).initialize(to: JoinEntry(
                order: slot.lines.order, doorbell: slot.lines.doorbell, body: slot.lines.body, report: slot.lines.report,
                parker: Unmanaged.passUnretained(slot.parker), expected: 0))
            slots.append(slot)
            if !sequential { startedThreads.add(1, ordering: .relaxed) }
            if slots.count + 1 > Self.onlineCores { yieldMask.store(63, ordering: .relaxed) }
        }
    }

    /// The body of a persistent lane thread: wait for a ticket, run the lane, report the join.
    private func laneThread(_ slot: WorkerSlot) {
        let ownership = UnsafeMutablePointer<LaneOwnership>.allocate(capacity: 1)
        ownership.initialize(to: LaneOwnership(pool: ownerMark, outer: nil))
        pthread_setspecific(laneOwnerKey, ownership)
        defer {
            pthread_setspecific(laneOwnerKey, nil)
            ownership.deallocate()
        }
        let order = slot.lines.order
        let doorbell = slot.lines.doorbell
        let body = slot.lines.body
        let report = slot.lines.report
        let control = self.control
        let lane = slot.lane
        var seen: UInt32 = 0
        while true {
            let parked = spinThenPark(spinNanoseconds, yieldMask: yieldMask.load(ordering: .relaxed), on: slot.parker) {
                doorbell.pointee.load(ordering: .sequentiallyConsistent) != seen
                    || stopping.load(ordering: .sequentiallyConsistent)
            }
            if stopping.load(ordering: .sequentiallyConsistent) { return }
            seen = doorbell.pointee.load(ordering: .acquiring)
            let laneCount = order.pointee.laneCount
            let coordinatorJoins = order.pointee.coordinatorJoins
            if order.pointee.firstPhase { report.pointee.resetFuel(budget: order.pointee.fuelBudget) }
            // A spinning lane saw the ticket within a fraction of a microsecond of the fork:
            // the coordinator counts its busy time from the fork stamp, sparing it a clock
            // read. A parked lane stamps its wake-up, so the wake latency is not counted.
            let wokeAt: UInt64 = parked ? now() : 0
            if report.pointee.wokeAt != wokeAt { report.pointee.wokeAt = wokeAt }
            order.pointee.entry.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.run(order, body, report, control, lane) }
            report.pointee.phaseEnd = now()
            // A lone data lane has no peer to release: leave the barrier's line alone (unless
            // the coordinator takes part in this phase).
            if laneCount > 2 || coordinatorJoins { control.barrier.depart() }
            report.pointee.done.store(seen, ordering: .sequentiallyConsistent)
            control.joinParker.wakeAll()
        }
    }

    // MARK: Async launches

    /// Runs `job` on the pool's runner thread (started on first use).
    func enqueueAsync(_ job: @escaping @Sendable () -> Void) throws(TaskletError) {
        try runner.withLock { (state) throws(TaskletError) -> Void in
            guard !state.stopping else {
                throw .invalidConfiguration("the tasklet pool is shut down")
            }
            if state.thread == nil {
                state.thread = try SpindleThread.startPoolThread(name: threadName) { [self] in self.runnerThread() }
                startedThreads.add(1, ordering: .relaxed)
            }
            state.queue.append(job)
        }
        runnerPending.add(1, ordering: .sequentiallyConsistent)
        runnerParker.wakeAll()
    }

    private func runnerThread() {
        while true {
            spinThenPark(spinNanoseconds, on: runnerParker) {
                runnerPending.load(ordering: .sequentiallyConsistent) > 0
                    || runnerStopping.load(ordering: .sequentiallyConsistent)
            }
            let job = runner.withLock { state -> (@Sendable () -> Void)? in
                state.queue.isEmpty ? nil : state.queue.removeFirst()
            }
            guard let job else {
                if runnerStopping.load(ordering: .sequentiallyConsistent) { return }
                continue
            }
            runnerPending.subtract(1, ordering: .sequentiallyConsistent)
            job()
        }
    }

    // MARK: Shutdown

    /// Refuses new launches, lets queued async launches fail and the running one finish, then
    /// stops and joins every pool thread. Blocks; idempotent.
    func shutdownBlocking() {
        closed.store(true, ordering: .sequentiallyConsistent)
        let runnerThread = runner.withLock { state -> SpindleThread? in
            state.stopping = true
            defer { state.thread = nil }
            return state.thread
        }
        runnerStopping.store(true, ordering: .sequentiallyConsistent)
        runnerParker.wakeAll()
        runnerThread?.join()
        // Jobs queued after the runner stopped still owe their callers an answer.
        for job in runner.withLock({ state -> [@Sendable () -> Void] in
            defer { state.queue.removeAll() }
            return state.queue
        }) { job() }

        gate.lock()
        stopping.store(true, ordering: .sequentiallyConsistent)
        for slot in slots { slot.parker.wakeAll() }
        for slot in slots { slot.thread?.join() }
        slots.removeAll()
        gate.unlock()
    }

    /// Stops the threads without waiting for them (the pool was dropped without shutdown).
    func abandon() {
        closed.store(true, ordering: .sequentiallyConsistent)
        runnerStopping.store(true, ordering: .sequentiallyConsistent)
        runnerParker.wakeAll()
        runner.withLock { $0.thread?.detach(); $0.thread = nil }
        stopping.store(true, ordering: .sequentiallyConsistent)
        gate.lock()
        for slot in slots {
            slot.parker.wakeAll()
            slot.thread?.detach()
        }
        gate.unlock()
    }
}

/// The lock held for the whole of a launch: a ticket lock, so launches run in the order they
/// asked for the pool (concurrent callers share it fairly; none is starved by a thread that
/// launches in a loop). A waiter spins for the pool's spin budget, then parks.
final class FairGate: @unchecked Sendable {
    // @unchecked Sendable: atomics and a thread-safe parker; `spinNanoseconds` is immutable.
    private let headerPad = HeaderPad()
    private let nextTicket = Atomic<UInt64>(0)
    private let serving = Atomic<UInt64>(0)
    private let parker = Parker()
    private let spinNanoseconds: UInt64

    init(spinNanoseconds: UInt64) { self.spinNanoseconds = spinNanoseconds }

    func lock() {
        let ticket = nextTicket.add(1, ordering: .sequentiallyConsistent).oldValue
        if serving.load(ordering: .sequentiallyConsistent) == ticket { return }
        spinThenPark(spinNanoseconds, on: parker) {
            serving.load(ordering: .sequentiallyConsistent) == ticket
        }
    }

    func unlock() {
        serving.add(1, ordering: .sequentiallyConsistent)
        parker.wakeAll()
    }
}

/// The thread-specific key whose value is the thread's cached sequential core (retained; the
/// key's destructor releases it when the thread ends).
let sequentialCoreKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { raw in
        let pointer: UnsafeMutableRawPointer? = raw
        if let pointer { Unmanaged<PoolCore>.fromOpaque(pointer).release() }
    }
    return key
}()
