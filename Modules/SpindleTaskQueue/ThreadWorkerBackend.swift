import DequeModule
import Logging
import SpindleSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Workers as threads of this process: the default, embedded backend.
///
/// Each worker is a dedicated OS thread with a mailbox. A worker takes its whole mailbox
/// (one batch), performs it, and reports the batch in one call; that call runs the
/// scheduler on the worker's own thread and usually refills the same mailbox, so a busy
/// worker never sleeps and no task costs a thread hop.
///
/// Values are passed without encoding, and errors `perform` throws reach the task's handle
/// unchanged. A synchronous `perform` runs on the worker thread itself; an `async` one runs as
/// a Swift task while the worker thread waits for it.
///
/// A thread cannot be killed: `kill` abandons the worker (its cancellation flag is set, its
/// result is discarded, a replacement starts) and the thread ends when its current `perform`
/// returns. `.end` retires the thread the same way, cleanly. `interrupt` raises the flag of one
/// task only (a time limit); `withdraw` makes the worker skip prefetched tasks it has not
/// started. `shutdown()` joins every thread it started, waiting at most `joinTimeout` for
/// threads still inside a `perform` that ignores its flag: those are detached and logged
/// (they end when their `perform` returns).
///
/// `start` and `dispatch` and the worker loop are `@inlinable`, so a queue made in a client
/// module runs a worker loop specialised for the client's kind.
public final class ThreadWorkerBackend<Kind: TaskKind>: WorkerBackend {
    @usableFromInline
    struct Attached {
        @usableFromInline var events: WorkerEvents<Kind>
    }

    @usableFromInline let attached = Mutex<Attached?>(nil)
    @usableFromInline let workers = Mutex<[WorkerID: ThreadWorker<Kind>]>([:])
    /// Threads that were told to stop and are not joined yet.
    @usableFromInline let stopped = Mutex<[ThreadWorker<Kind>]>([])
    /// Signalled by every worker thread as it ends.
    @usableFromInline let exits = ExitSignal()
    let joinTimeout: Duration
    let logger: Logger
    private let straggled = Atomic<Int>(0)

    /// - Parameters:
    ///   - joinTimeout: how long `shutdown()` waits for a thread still running a `perform`.
    ///   - logger: where threads that outlive `joinTimeout` are reported.
    public init(joinTimeout: Duration = .seconds(10), logger: Logger = Logger(label: "spindle.taskqueue.threads")) {
        self.joinTimeout = joinTimeout
        self.logger = logger
    }

    public func attach(kind: Kind, events: WorkerEvents<Kind>) async throws(TaskQueueError) {
        attached.withLock { $0 = Attached(events: events) }
    }

    @inlinable
    public func start(_ id: WorkerID) {
        guard let events = attached.withLock({ $0?.events }) else { return }
        reapFinished()
        let worker = ThreadWorker<Kind>(id: id, events: events, exits: exits)
        workers.withLock { $0[id] = worker }
        if let refusal = worker.launch() {
            workers.withLock { _ = $0.removeValue(forKey: id) }
            // Reported from another thread: backend methods must not call events directly.
            Task.detached { events.died(id, detail: refusal) }
        }
    }

    @inlinable
    public func dispatch(_ id: WorkerID, _ batch: [Assignment<Kind>]) {
        workers.withLock { $0[id] }?.post(batch)
    }

    public func kill(_ id: WorkerID) {
        guard let worker = workers.withLock({ $0.removeValue(forKey: id) }) else { return }
        worker.stop(abandon: true)
        stopped.withLock { $0.append(worker) }
    }

    public func retire(_ id: WorkerID) {
        guard let worker = workers.withLock({ $0.removeValue(forKey: id) }) else { return }
        worker.stop(abandon: false)
        stopped.withLock { $0.append(worker) }
    }

    public func broadcast(_ feedback: Kind.Feedback, to ids: [WorkerID]) {
        let targets = workers.withLock { w in ids.compactMap { w[$0] } }
        for worker in targets { worker.post(feedback) }
    }

    public func interrupt(_ id: WorkerID, seq: UInt64) {
        workers.withLock { $0[id] }?.cancelFlag.interrupt(seq: seq)
    }

    public func withdraw(_ id: WorkerID, seqs: [UInt64]) {
        workers.withLock { $0[id] }?.withdraw(seqs)
    }

    /// Threads that `shutdown()` had to leave running after `joinTimeout` (for tests and
    /// operators).
    public var detachedThreadCount: Int { straggled.load(ordering: .relaxed) }

    public func shutdown() async {
        let live = workers.withLock { w -> [ThreadWorker<Kind>] in
            let all = Array(w.values)
            w = [:]
            return all
        }
        for worker in live { worker.stop(abandon: true) }
        let all = live + stopped.withLock { s -> [ThreadWorker<Kind>] in
            let all = s
            s = []
            return all
        }
        attached.withLock { $0 = nil }
        // Joining blocks; do it on a plain thread so no cooperative-pool thread waits.
        let left = await withCheckedContinuation { (c: CheckedContinuation<[WorkerID], Never>) in
            let joiner = ThreadJoiner(workers: all.map { $0 as any JoinableThread }, exits: exits,
                                      timeout: joinTimeout) { c.resume(returning: $0) }
            joiner.run()
        }
        if !left.isEmpty {
            straggled.add(left.count, ordering: .relaxed)
            logger.error("worker threads still inside perform after the join timeout were detached",
                         metadata: ["workers": "\(left)", "timeout": "\(joinTimeout)"])
        }
    }

    /// Joins threads that already ended so retired workers do not pile up.
    @usableFromInline
    func reapFinished() {
        let done = stopped.withLock { s -> [ThreadWorker<Kind>] in
            let done = s.filter(\.hasExited)
            s.removeAll { $0.hasExited }
            return done
        }
        for worker in done { worker.join() }
    }

    /// Live worker threads (for tests).
    public var liveThreadCount: Int { workers.withLock { $0.count } }
}

/// Something whose OS thread can be joined.
protocol JoinableThread: Sendable {
    var workerID: WorkerID { get }
    var hasExited: Bool { get }
    func join()
    func detach()
}

/// A condition every worker thread signals as it ends, so shutdown can wait for exits with
/// a timeout (a join cannot time out).
@usableFromInline
final class ExitSignal: Sendable {
    private let lock = ConditionLock()

    @usableFromInline
    init() {}

    /// A thread ended.
    @usableFromInline
    func signal() {
        lock.withLock { lock.broadcast() }
    }

    /// Waits until `done()` holds or `timeout` passed; returns whether it holds.
    func wait(timeout: Duration, until done: () -> Bool) -> Bool {
        lock.wait(timeout: timeout, until: done)
    }
}

/// Joins threads on a helper thread, then calls `done` with the workers whose threads did not
/// end within `timeout` (those are detached).
final class ThreadJoiner: Sendable {
    private let workers: [any JoinableThread]
    private let exits: ExitSignal
    private let timeout: Duration
    private let done: @Sendable ([WorkerID]) -> Void

    init(workers: [any JoinableThread], exits: ExitSignal, timeout: Duration,
         done: @escaping @Sendable ([WorkerID]) -> Void) {
        self.workers = workers
        self.exits = exits
        self.timeout = timeout
        self.done = done
    }

    func run() {
        if workers.isEmpty { return done([]) }
        do {
            try SpindleThread.detached(name: "spindle-join") { self.joinAll() }
        } catch {
            joinAll()
        }
    }

    private func joinAll() {
        _ = exits.wait(timeout: timeout) { workers.allSatisfy(\.hasExited) }
        var left: [WorkerID] = []
        for w in workers {
            if w.hasExited {
                w.join()
            } else {
                w.detach()
                left.append(w.workerID)
            }
        }
        done(left)
    }
}

/// Starts a worker thread running `body`: the thread, or why the system refused.
@usableFromInline
func startWorkerThread(_ body: @escaping @Sendable () -> Void) -> (SpindleThread?, String?) {
    do {
        return (try SpindleThread.start(name: "spindle-worker", body), nil)
    } catch {
        return (nil, "\(error)")
    }
}

/// One worker thread and its mailbox.
///
/// `@unchecked Sendable`: the mailbox fields and `withdrawn` are only touched with `lock` held; `thread` is
/// written once by `launch()` before any other thread can see this object's thread and read
/// only by `join()`/`detach()`, which the backend's shutdown calls once, after `stop`.
@usableFromInline
final class ThreadWorker<Kind: TaskKind>: @unchecked Sendable, JoinableThread {
    @usableFromInline let id: WorkerID
    @usableFromInline let events: WorkerEvents<Kind>
    @usableFromInline let cancelFlag = CancellationFlag()
    @usableFromInline let exited = Atomic<Bool>(false)
    @usableFromInline let exits: ExitSignal
    /// How many withdrawn sequence numbers wait in `withdrawn` (read without the lock, so a
    /// worker that was never asked to withdraw anything pays one load per task).
    @usableFromInline let withdrawnCount = Atomic<Int>(0)
    @usableFromInline let lock = ConditionLock()
    @usableFromInline var thread: SpindleThread?
    private var joined = false
    // Guarded by `lock`:
    @usableFromInline var mailbox: [Assignment<Kind>] = []
    @usableFromInline var broadcasts: [Kind.Feedback] = []
    @usableFromInline var stopping = false
    @usableFromInline var withdrawn: Set<UInt64> = []
    private var detached = false

    @usableFromInline
    init(id: WorkerID, events: WorkerEvents<Kind>, exits: ExitSignal) {
        self.id = id
        self.events = events
        self.exits = exits
    }

    var hasExited: Bool { exited.load(ordering: .acquiring) }
    var workerID: WorkerID { id }

    /// Starts the worker's thread.
    /// - Returns: nil, or why the system refused.
    @inlinable
    func launch() -> String? {
        // The closure is formed here, so a client's queue runs a worker loop specialised for
        // its kind.
        let (started, refusal) = startWorkerThread { self.main() }
        thread = started
        return refusal
    }

    func join() {
        guard let thread, !joined, !detached else { return }
        joined = true
        thread.join()
    }

    func detach() {
        guard let thread, !joined, !detached else { return }
        detached = true
        thread.detach()
    }

    /// Makes the worker skip these prefetched tasks; raises the flag of the one it runs now if
    /// it is among them.
    func withdraw(_ seqs: [UInt64]) {
        lock.lock()
        withdrawn.formUnion(seqs)
        withdrawnCount.store(withdrawn.count, ordering: .releasing)
        lock.unlock()
        let running = cancelFlag.current.load(ordering: .acquiring)
        if seqs.contains(running) { cancelFlag.interrupt(seq: running) }
    }

    /// Whether task `seq` was withdrawn (and forgets it).
    @inlinable
    func takeWithdrawn(_ seq: UInt64) -> Bool {
        guard withdrawnCount.load(ordering: .acquiring) > 0 else { return false }
        lock.lock()
        let hit = withdrawn.remove(seq) != nil
        withdrawnCount.store(withdrawn.count, ordering: .releasing)
        lock.unlock()
        return hit
    }

    @inlinable
    func post(_ batch: [Assignment<Kind>]) {
        lock.lock()
        if mailbox.isEmpty { mailbox = batch } else { mailbox.append(contentsOf: batch) }
        lock.signal()
        lock.unlock()
    }

    func post(_ feedback: Kind.Feedback) {
        lock.lock()
        broadcasts.append(feedback)
        lock.signal()
        lock.unlock()
    }

    /// Stops after the current task; with `abandon`, its answers are discarded and
    /// `perform` sees `isCancelled`.
    func stop(abandon: Bool) {
        if abandon { cancelFlag.set() }
        lock.lock()
        stopping = true
        lock.signal()
        lock.unlock()
    }

    @inlinable
    func main() {
        defer {
            exited.store(true, ordering: .releasing)
            exits.signal()
        }
        let route = FeedbackRoute<Kind>()
        let events = self.events
        let id = self.id
        let context = PerformContext<Kind.Feedback>(cancelFlag: cancelFlag) { feedback in
            if let task = route.current { events.feedback(id, task: task, feedback) }
        }
        events.ready(id)
        var completions: [Completion<Kind>] = []
        while true {
            lock.lock()
            while mailbox.isEmpty && broadcasts.isEmpty && !stopping {
                lock.wait()
            }
            let batch = mailbox
            mailbox = []
            let feedback = broadcasts
            broadcasts = []
            let stop = stopping
            lock.unlock()

            for f in feedback { Kind.received(broadcast: f) }
            if cancelFlag.isAbandoned { return }
            if batch.isEmpty {
                if stop { return }
                continue
            }
            completions.removeAll(keepingCapacity: true)
            completions.reserveCapacity(batch.count)
            for assignment in batch {
                if takeWithdrawn(assignment.seq) { continue }
                route.current = assignment.task
                cancelFlag.begin(seq: assignment.seq)
                let outcome = perform(assignment.request, context: context)
                if cancelFlag.isAbandoned { return }
                completions.append(Completion(seq: assignment.seq, outcome: outcome))
            }
            route.current = nil
            if !completions.isEmpty { events.completed(id, completions) }
        }
    }

    /// Runs one request: the kind's synchronous `perform` on this thread, or its `async` one
    /// as a Swift task this thread waits for.
    @inlinable
    func perform(_ request: Kind.Request, context: PerformContext<Kind.Feedback>) -> Completion<Kind>.Outcome {
        do {
            return .response(try Kind.perform(request, context: context))
        } catch is AsyncPerformRequired {
            return performAsynchronously(request, context: context)
        } catch {
            return .failed(error, retryable: isRetryable(error))
        }
    }

    @usableFromInline
    func performAsynchronously(_ request: Kind.Request, context: PerformContext<Kind.Feedback>) -> Completion<Kind>.Outcome {
        let result = BlockingResult<Completion<Kind>.Outcome>()
        Task {
            do {
                result.finish(.response(try await Kind.perform(request, context: context)))
            } catch {
                result.finish(.failed(error, retryable: isRetryable(error)))
            }
        }
        return result.wait()
    }
}

/// The task a worker thread is running, for routing its feedback.
///
/// `@unchecked Sendable`: read and written only on the worker's own thread (the context's
/// emitter is called from `perform`, which runs on that thread).
@usableFromInline
final class FeedbackRoute<Kind: TaskKind>: @unchecked Sendable {
    @usableFromInline var current: Kind.Task?

    @inlinable
    init() {}
}
