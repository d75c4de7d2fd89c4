import CLibUV
import DequeModule
import SpindleSupport
import Synchronization

/// One libuv loop (`uv_loop_t`) running on its own thread.
///
/// Any thread may hand work to the loop with ``execute(_:)``, ``submit(_:)`` or timers; the
/// loop runs it on its thread, in FIFO order per producer. The loop is also a
/// `SerialExecutor`, so an actor can pin itself to it and its methods run on the loop thread:
///
/// ```swift
/// actor Session {
///     let loop: EventLoop
///     nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
/// }
/// ```
///
/// Cross-thread hand-off is one mutex-protected queue plus one `uv_async_t`; a wake-up is sent
/// only when the queue goes from idle to busy, and each wake-up drains everything queued.
/// Work the loop thread queues for itself (a task resumed on the loop, say) needs no wake-up:
/// the queue is drained again at the end of the same loop turn.
///
///     producers ──► Mutex<Deque<Work>> ──uv_async_send──► loop thread: drain, run in order
///     loop thread ──► the same queue ──► drained at the end of this turn (uv_check)
///
/// Call ``shutdown()`` when done: it closes every handle the loop owns, runs the loop until the
/// close callbacks have run, checks that `uv_loop_close` succeeds and joins the thread.
public final class EventLoop: SerialExecutor, @unchecked Sendable {
    // @unchecked Sendable: immutable state is set in init; `inbox` and `threadID` are
    // synchronised (Mutex, Atomic); every `var` below is touched only on the loop thread
    // (see "Loop-thread state"), which `assertInLoop` checks in debug builds.

    /// The name given at creation; the loop thread carries its first 15 bytes.
    public let name: String

    let uvLoop: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let flushCheck: UnsafeMutablePointer<uv_check_t>
    private let flushIdle: UnsafeMutablePointer<uv_idle_t>
    /// One read buffer shared by every stream on this loop: reads are serial on the loop
    /// thread and the bytes are only lent to `onRead` for the duration of the call.
    let readBuffer: UnsafeMutableRawPointer
    static let readBufferSize = 64 << 10

    private let inbox: Mutex<Inbox>
    private let threadID = Atomic<UInt>(0)

    // MARK: Loop-thread state
    private var spare = Deque<Work>()
    private var handles: [ObjectIdentifier: any LoopResource] = [:]
    private var flushList: [StreamChannel] = []
    private var flushSpare: [StreamChannel] = []
    /// Whether the end-of-turn handles (`flushCheck`, `flushIdle`) are started.
    private var endOfTurnArmed = false
    /// Whether the loop thread queued work for itself that the end of this turn drains.
    private var drainAtEndOfTurn = false
    /// True once shutdown has begun on the loop thread: no new handles are opened.
    private(set) var isClosing = false

    enum Work {
        case closure(@Sendable () -> Void)
        case job(UnownedJob)
        case flush(StreamChannel)
        case shutdown
    }

    private struct Inbox {
        enum State { case open, shuttingDown, closed }
        var queue = Deque<Work>()
        var wakePending = false
        var state = State.open
        var thread: SpindleThread? = nil
        var waiters: [CheckedContinuation<Void, Never>] = []
        var finalHandleCount: Int? = nil
        var closeStatus: Int32? = nil
        var afterExit: [@Sendable () async -> Void] = []
    }

    /// Creates the loop and starts its thread.
    /// - Throws: `EventLoopError` naming the loop and the step that failed when libuv cannot
    ///   initialise the loop or one of its handles (EMFILE when the process is out of file
    ///   descriptors) or the thread cannot start. Nothing is left behind.
    public init(name: String = "spindle-loop") throws(EventLoopError) {
        _ = EventLoop.sigpipeIgnored
        self.name = name
        self.inbox = Mutex(Inbox())
        uvLoop = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        flushCheck = .allocate(capacity: 1)
        flushIdle = .allocate(capacity: 1)
        readBuffer = .allocate(byteCount: EventLoop.readBufferSize, alignment: 16)
        // Every stored property is set from here on, so a throw below releases `self` and
        // `deinit` frees the memory: the failure paths undo libuv state only, never free.
        let status = uv_loop_init(uvLoop)
        guard status == 0 else {
            EventLoop.closeLeakedBackend(uvLoop)
            throw EventLoopError(uvCode: status, operation: "create event loop \"\(name)\"")
        }
        uvLoop.pointee.data = nil
        var initialised: [UnsafeMutablePointer<uv_handle_t>] = []
        func fail(_ status: Int32, _ step: String) -> EventLoopError {
            abandonLoop(closing: initialised)
            return EventLoopError(uvCode: status, operation: "\(step) for event loop \"\(name)\"")
        }
        let asyncStatus = uv_async_init(uvLoop, wakeup) { handle in
            guard let handle, let data = handle.pointee.data else { return }
            Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().drainInbox()
        }
        guard asyncStatus == 0 else { throw fail(asyncStatus, "create the wake-up handle") }
        initialised.append(EventLoop.handle(wakeup))
        let checkStatus = uv_check_init(uvLoop, flushCheck)
        guard checkStatus == 0 else { throw fail(checkStatus, "create the flush check handle") }
        initialised.append(EventLoop.handle(flushCheck))
        let idleStatus = uv_idle_init(uvLoop, flushIdle)
        guard idleStatus == 0 else { throw fail(idleStatus, "create the flush idle handle") }
        initialised.append(EventLoop.handle(flushIdle))
        let me = Unmanaged.passUnretained(self).toOpaque()
        wakeup.pointee.data = me
        flushCheck.pointee.data = me
        flushIdle.pointee.data = me

        // The thread holds a strong reference until it exits, so the loop outlives its thread.
        do {
            let thread = try SpindleThread.start(name: name) { [self] in threadMain() }
            inbox.withLock { $0.thread = thread }
        } catch {
            abandonLoop(closing: initialised)
            throw EventLoopError(code: -error.code, name: String(cString: uv_err_name(-error.code)),
                                 operation: "start thread for event loop \"\(name)\"",
                                 message: "\(error)")
        }
    }

    deinit {
        // Reached once: after the thread has exited (it holds a reference while running), or
        // when init threw (after undoing the libuv state). The only place memory is freed.
        uvLoop.deallocate()
        wakeup.deallocate()
        flushCheck.deallocate()
        flushIdle.deallocate()
        readBuffer.deallocate()
    }

    /// Undoes a partly initialised loop on an init failure: closes `handles`, lets their close
    /// callbacks run and closes the loop. Frees nothing (`deinit` does).
    private func abandonLoop(closing handles: [UnsafeMutablePointer<uv_handle_t>]) {
        for h in handles { uv_close(h, nil) }
        uv_run(uvLoop, UV_RUN_NOWAIT)
        uv_loop_close(uvLoop)
    }

    /// libuv before 1.51 leaves the loop's epoll descriptor open when `uv_loop_init` fails
    /// after creating it (libuv/libuv#4757); close it so a failed init leaks nothing. Newer
    /// versions close it themselves and are left alone.
    private static func closeLeakedBackend(_ loop: UnsafeMutablePointer<uv_loop_t>) {
        guard uv_version() < 0x01_33_00 else { return }
        let fd = loop.pointee.backend_fd
        // -1 when the epoll descriptor itself could not be created.
        if fd >= 0 { _ = close(fd) }
    }

    private static func handle<H>(_ h: UnsafeMutablePointer<H>) -> UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self)
    }

    /// SIGPIPE would kill the process on a write to a closed peer; libuv reports EPIPE instead
    /// once it is ignored. Done once, and only when the program left SIGPIPE at its default.
    private static let sigpipeIgnored: Bool = {
        spindle_ignore_sigpipe()
        return true
    }()

    /// True when called on this loop's thread.
    public var inEventLoop: Bool {
        threadID.load(ordering: .relaxed) == SpindleThread.currentID
    }

    @inline(__always)
    package func assertInLoop(_ what: @autoclosure () -> String = "", file: StaticString = #fileID, line: UInt = #line) {
        assert(inEventLoop, "\(what()) must run on event loop \"\(name)\"", file: file, line: line)
    }

    /// Runs `work` on the loop thread, after everything this thread queued before it.
    ///
    /// Callable from any thread, including the loop thread itself (the work is queued, not run
    /// inline). After ``shutdown()`` has begun, `work` is dropped; use ``submit(_:)`` or
    /// ``tryExecute(_:)`` to learn of that.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        _ = push(.closure(work))
    }

    /// Like ``execute(_:)`` but reports whether the loop accepted the work (false after shutdown began).
    @discardableResult
    public func tryExecute(_ work: @escaping @Sendable () -> Void) -> Bool {
        push(.closure(work))
    }

    /// Runs `work` on the loop thread and returns its result or rethrows its error.
    /// - Throws: the error `work` threw, or `EventLoopError.loopShutDown` when the loop no longer accepts work.
    public func submit<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            let accepted = push(.closure({ c.resume(with: Result { try work() }) }))
            if !accepted { c.resume(throwing: EventLoopError.loopShutDown(name, "submit work")) }
        }
    }

    /// Runs `body` now when on the loop thread, otherwise queues it. Returns false when dropped.
    @discardableResult
    func runOnLoop(_ body: @escaping @Sendable () -> Void) -> Bool {
        if inEventLoop { body(); return true }
        return push(.closure(body))
    }

    /// Queues a flush of `channel`'s pending writes (called off the loop thread).
    func requestFlush(_ channel: StreamChannel) -> Bool {
        push(.flush(channel))
    }

    private func push(_ work: Work) -> Bool {
        let onLoop = inEventLoop
        let send: Bool? = inbox.withLock { s in
            guard s.state == .open else { return nil }
            s.queue.append(work)
            if s.wakePending { return false }
            s.wakePending = true
            return true
        }
        guard let send else { return false }
        if send {
            if onLoop {
                // No wake-up of ourselves (an eventfd write, an epoll return, an eventfd read):
                // the end of this turn drains the queue.
                drainAtEndOfTurn = true
                armEndOfTurn()
            } else {
                uv_async_send(wakeup)
            }
        }
        return true
    }

    // MARK: Loop thread

    private func threadMain() {
        threadID.store(SpindleThread.currentID, ordering: .relaxed)
        spindle_unblock_signals()
        uv_run(uvLoop, UV_RUN_DEFAULT)
        // Every handle is closed or closing; anything left over (a bug) is closed here so
        // uv_loop_close can succeed.
        var status = uv_loop_close(uvLoop)
        if status != 0 {
            uv_walk(uvLoop, { handle, _ in
                if let handle, uv_is_closing(handle) == 0 { uv_close(handle, nil) }
            }, nil)
            uv_run(uvLoop, UV_RUN_DEFAULT)
            status = uv_loop_close(uvLoop)
        }
        let leftover = handles.count
        let waiters = inbox.withLock { s in
            s.state = .closed
            s.closeStatus = status
            s.finalHandleCount = leftover
            defer { s.waiters = [] }
            return s.waiters
        }
        threadID.store(0, ordering: .relaxed)
        for w in waiters { w.resume() }
    }

    private func drainInbox() {
        inbox.withLock { s in
            swap(&s.queue, &spare)
            s.wakePending = false
        }
        while let work = spare.popFirst() {
            switch work {
            case .closure(let body): body()
            case .job(let job): job.runSynchronously(on: asUnownedSerialExecutor())
            case .flush(let channel): scheduleFlush(channel)
            case .shutdown: beginShutdown()
            }
        }
    }

    /// Adds `channel` to the end-of-turn flush list (loop thread).
    func scheduleFlush(_ channel: StreamChannel) {
        flushList.append(channel)
        armEndOfTurn()
    }

    /// Starts the end-of-turn handles unless they run already (loop thread).
    private func armEndOfTurn() {
        guard !endOfTurnArmed, !isClosing else { return }
        endOfTurnArmed = true
        uv_check_start(flushCheck) { handle in
            guard let handle, let data = handle.pointee.data else { return }
            Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().endOfTurn()
        }
        // An active idle handle makes the next poll non-blocking, so work queued and writes
        // made outside the poll phase (timers) are handled in this turn too.
        uv_idle_start(flushIdle) { _ in }
    }

    /// The end of a loop turn: run what the loop thread queued for itself, then flush every
    /// channel written to, so the drained work's writes leave in this turn as well.
    private func endOfTurn() {
        if drainAtEndOfTurn {
            drainAtEndOfTurn = false
            drainInbox()
        }
        swap(&flushList, &flushSpare)
        for channel in flushSpare { channel.flushPending() }
        flushSpare.removeAll(keepingCapacity: true)
        // Work or writes queued while this ran keep the handles for the next turn.
        if flushList.isEmpty && !drainAtEndOfTurn {
            endOfTurnArmed = false
            uv_check_stop(flushCheck)
            uv_idle_stop(flushIdle)
        }
    }

    // MARK: Handle registry (loop thread)

    /// Registers an owner of open handles so shutdown can close it. Returns false when closing.
    func register(_ resource: any LoopResource) {
        assertInLoop("register a handle")
        handles[ObjectIdentifier(resource)] = resource
    }

    func unregister(_ resource: any LoopResource) {
        handles.removeValue(forKey: ObjectIdentifier(resource))
    }

    // MARK: Shutdown

    private func beginShutdown() {
        isClosing = true
        for resource in Array(handles.values) { resource.closeForShutdown() }
        // Writes still listed for a flush belong to channels that are now closing.
        flushList.removeAll()
        for h in [OpaquePointer(wakeup), OpaquePointer(flushCheck), OpaquePointer(flushIdle)] {
            uv_close(UnsafeMutablePointer<uv_handle_t>(h), nil)
        }
    }

    /// Closes every handle of this loop, waits until they are closed and joins the thread.
    ///
    /// Work queued before the call still runs; afterwards `execute` drops work and `submit`
    /// throws `EventLoopError.loopShutDown`. Streams and listeners are closed (writes not yet
    /// handed to the kernel are discarded and reported through `onClose`), timers and signal
    /// watchers are cancelled, and running child processes are killed with SIGKILL and reaped
    /// unless they were spawned with a `parentDeathSignal`, which then reaches them as the loop
    /// thread exits. Safe to call more than once and from several tasks.
    public func shutdown() async {
        let first: Bool? = inbox.withLock { s in
            switch s.state {
            case .open:
                s.state = .shuttingDown
                s.queue.append(.shutdown)
                let send = !s.wakePending
                s.wakePending = true
                return send
            case .shuttingDown: return nil
            case .closed: return nil
            }
        }
        if first == true { uv_async_send(wakeup) }
        await waitUntilClosed()
        let thread = inbox.withLock { s in
            defer { s.thread = nil }
            return s.thread
        }
        thread?.join()
        let tasks = inbox.withLock { s in
            defer { s.afterExit = [] }
            return s.afterExit
        }
        for task in tasks { await task() }
    }

    /// Work to run on the shutting-down task once the loop thread has exited (loop thread).
    func afterThreadExit(_ body: @escaping @Sendable () async -> Void) {
        inbox.withLock { $0.afterExit.append(body) }
    }

    /// The number of handles (streams, listeners, timers, processes, signal watchers) that are
    /// open or closing; 0 after a clean shutdown.
    public var openHandleCount: Int {
        get async {
            if let n = inbox.withLock({ $0.finalHandleCount }) { return n }
            if let n = try? await submit({ self.handles.count }) { return n }
            return await waitForFinalCount()
        }
    }

    private func waitForFinalCount() async -> Int {
        await waitUntilClosed()
        return inbox.withLock { $0.finalHandleCount ?? 0 }
    }

    /// Returns once the loop has closed (at once if it already has).
    private func waitUntilClosed() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = inbox.withLock { s in
                if s.state == .closed { return true }
                s.waiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// `uv_loop_close`'s result once shutdown has finished (0: every handle was closed); nil before.
    public var closeStatus: Int32? {
        inbox.withLock { $0.closeStatus }
    }

    /// True once ``shutdown()`` has begun: the loop accepts no more work.
    public var isShutDown: Bool {
        inbox.withLock { $0.state != .open }
    }

    // MARK: SerialExecutor

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if !push(.job(unowned)) {
            // The loop is gone; run the job on the global executor rather than strand the task.
            // Actor jobs stay serial there (the runtime schedules one per actor at a time).
            globalConcurrentExecutor.enqueue(ExecutorJob(unowned))
        }
    }

    public func checkIsolated() {
        precondition(inEventLoop || isShutDown, "not on event loop \"\(name)\"")
    }
}

/// An owner of libuv handles on a loop, closed by the loop's shutdown.
protocol LoopResource: AnyObject {
    /// Closes the owned handles immediately (loop thread, during shutdown).
    func closeForShutdown()
}

/// Loop-confined values (`LoopConfined`) check in debug builds that they are used on their loop.
extension EventLoop: ConfinementDomain {
    package var isCurrentThread: Bool { inEventLoop }
    package var confinementName: String { "event loop \"\(name)\"" }
}
