import SpindleKernel
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One persistent pool thread's mailbox: a ticket the coordinator bumps to start a phase.
final class WorkerSlot: @unchecked Sendable {
    // @unchecked Sendable: `ticket` is atomic and `parker` thread-safe; `thread` is written
    // once by the coordinator under the pool's gate and read only by shutdown, under it too.
    // `job` and `phaseLanes` are written by the coordinator (under the gate, no lane running
    // this slot's phase) before its sequentially consistent ticket bump, and read by the lane
    // only after it saw that bump: the ticket orders them.
    let lane: Int
    let ticket = Atomic<UInt32>(0)
    /// The current phase's job, on the ticket's line so a lane fetches both at once. Left
    /// stale after the join; only read after the next ticket bump.
    var job: Unmanaged<LaneJob>?
    /// Data lanes in the current phase (1 means no peer can wait at the barrier).
    var phaseLanes = 0
    let parker = Parker()
    var thread: PoolThread?
    /// Keeps neighbouring slots off this slot's cache line.
    private let padding: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)

    init(lane: Int) { self.lane = lane }
}

/// The pool's machinery: persistent lane threads, the launch gate, phases, the async runner.
///
/// ```
///  coordinator (caller)            pool thread k (lane k)
///  ─────────────────────           ──────────────────────
///  gate.lock
///  reset control
///  coordinator closure ─┐
///    parallelForWorkers │ slot.job = state
///      ticket[k] += 1 ──┼────────▶ spin/park until ticket changes
///      spin/park until  │          state.runLane(k)
///      remaining == 0 ◀─┼───────── barrier.depart; remaining -= 1
///  gate.unlock          │          back to spin/park
/// ```
final class PoolCore: @unchecked Sendable {
    // @unchecked Sendable: `slots` is written only by the launch that holds `gate`; a slot's
    // phase fields are covered by its ticket (see `WorkerSlot`). Everything else is atomic, a
    // Mutex, or immutable.
    let clock: any SpindleClock
    let spinNanoseconds: UInt64
    let maxLanes: Int
    let threadName: String
    let control = LaunchControl()
    private let gate = GateLock()
    private var slots: [WorkerSlot] = []
    private let stopping = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    private let startedThreads = Atomic<Int>(0)

    private struct AsyncRunner {
        var queue: [@Sendable () -> Void] = []
        var thread: PoolThread?
        var stopping = false
    }
    private let runner = Mutex(AsyncRunner())
    private let runnerPending = Atomic<Int>(0)
    private let runnerStopping = Atomic<Bool>(false)
    private let runnerParker = Parker()

    init(configuration: TaskletPool.Configuration) {
        clock = configuration.clock
        spinNanoseconds = configuration.waitPolicy.spinNanoseconds
        maxLanes = configuration.maxLanes
        threadName = configuration.threadName
    }

    /// Threads this pool has started (lane threads plus the async runner).
    var threadCount: Int { startedThreads.load(ordering: .relaxed) }

    private var ownerMark: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    // MARK: Launch

    func launch<Shared: Sendable, Scratch: Sendable>(
        workers: Int, shared: Shared, scratch factory: (Int) -> Scratch, fuel: FuelPolicy,
        cancellation: TaskletCancellation?,
        coordinator: (CoordinatorContext<Shared, Scratch>) throws -> Void
    ) throws(TaskletError) -> TaskletResult {
        guard workers >= 1 else {
            throw .invalidConfiguration("workers = \(workers): a tasklet needs at least 1 lane (lane 0 is the coordinator)")
        }
        guard workers <= maxLanes else {
            throw .invalidConfiguration("workers = \(workers) exceeds the pool's maxLanes = \(maxLanes)")
        }
        guard !LaneOwnership.callerRunsLane(of: ownerMark) else {
            throw .invalidConfiguration("nested launch on the pool that runs the calling lane would deadlock; launch on a separate TaskletPool")
        }
        gate.lock()
        defer { gate.unlock() }
        guard !closed.load(ordering: .sequentiallyConsistent) else {
            throw .invalidConfiguration("the tasklet pool is shut down")
        }
        try ensureThreads(workers - 1)
        control.reset(lanes: workers, fuel: fuel, spinNanoseconds: spinNanoseconds)
        let state = LaunchState(core: self, lanes: workers, shared: shared, scratch: factory)
        cancellation?.attach(control)
        defer { cancellation?.detach() }

        let start = clock.now()
        var coordinatorError: (any Error)?
        var ownership = LaneOwnership(pool: ownerMark, outer: pthread_getspecific(laneOwnerKey))
        withUnsafeMutablePointer(to: &ownership) { link in
            pthread_setspecific(laneOwnerKey, link)
            do {
                try coordinator(CoordinatorContext(launch: state))
            } catch {
                coordinatorError = error
            }
            pthread_setspecific(laneOwnerKey, link.pointee.outer)
        }
        state.finished = true
        let elapsed = clock.now() - start

        if let failure = control.firstFailure { throw failure }
        if let coordinatorError {
            if let taskletError = coordinatorError as? TaskletError { throw taskletError }
            throw .laneFailed(lane: 0, error: coordinatorError)
        }
        if control.isCancelled { throw .cancelled }

        let elapsedNanoseconds = UInt64(clamping: elapsed.nanosecondsClamped)
        control.addBusy(lane: 0, nanoseconds: elapsedNanoseconds &- min(elapsedNanoseconds, state.joinWaitNanoseconds))
        var busy: [Duration] = []
        var fuelPerLane: [UInt64] = []
        busy.reserveCapacity(workers)
        fuelPerLane.reserveCapacity(workers)
        var fuelUsed: UInt64 = 0
        for lane in 0..<workers {
            busy.append(.nanoseconds(Int64(clamping: control.busyNanoseconds(lane: lane))))
            let used = control.fuelUsed(lane: lane)
            fuelPerLane.append(used)
            fuelUsed &+= used
        }
        return TaskletResult(output: state.output, fuelUsed: fuelUsed, laneFuelUsed: fuelPerLane,
                             laneBusyTime: busy, elapsed: elapsed)
    }

    /// Runs one phase on lanes 1…dataLanes and returns when all have finished.
    func runPhase(_ job: LaneJob, dataLanes: Int) {
        let unmanaged = Unmanaged.passUnretained(job)
        control.barrier.resetForPhase(parties: dataLanes)
        control.remaining.store(dataLanes, ordering: .relaxed)
        slots.withUnsafeBufferPointer { slots in
            for index in 0..<dataLanes {
                slots[index].job = unmanaged
                slots[index].phaseLanes = dataLanes
                slots[index].ticket.add(1, ordering: .sequentiallyConsistent)
                slots[index].parker.wakeAll()
            }
        }
        let control = self.control
        spinThenPark(spinNanoseconds, on: control.joinParker) {
            control.remaining.load(ordering: .sequentiallyConsistent) == 0
        }
    }

    /// Starts lane threads until there are `count` (under the gate).
    private func ensureThreads(_ count: Int) throws(TaskletError) {
        while slots.count < count {
            let slot = WorkerSlot(lane: slots.count + 1)
            slot.thread = try PoolThread.start(name: threadName) { [self] in self.laneThread(slot) }
            slots.append(slot)
            startedThreads.add(1, ordering: .relaxed)
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
        var seen: UInt32 = 0
        let control = self.control
        while true {
            spinThenPark(spinNanoseconds, on: slot.parker) {
                slot.ticket.load(ordering: .sequentiallyConsistent) != seen
                    || stopping.load(ordering: .sequentiallyConsistent)
            }
            if stopping.load(ordering: .sequentiallyConsistent) { return }
            seen &+= 1
            // The coordinator keeps the job alive until the join: no retain/release here (they
            // would bounce the job's reference count between cores).
            let phaseLanes = slot.phaseLanes
            if let job = slot.job { job._withUnsafeGuaranteedRef { $0.runLane(slot.lane) } }
            // A lone data lane has no peer to release: leave the barrier's line alone.
            if phaseLanes > 1 { control.barrier.depart() }
            if control.remaining.subtract(1, ordering: .sequentiallyConsistent).newValue == 0 {
                control.joinParker.wakeAll()
            }
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
                state.thread = try PoolThread.start(name: threadName) { [self] in self.runnerThread() }
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
        let runnerThread = runner.withLock { state -> PoolThread? in
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

/// A blocking lock held for the whole of a launch (launches on one pool queue here).
final class GateLock: @unchecked Sendable {
    // @unchecked Sendable: a heap-allocated pthread mutex, used only through pthread calls.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
}
