import DequeModule
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
/// Values are passed without encoding. A thread cannot be killed: `kill` abandons the
/// worker (its cancellation flag is set, its result is discarded, a replacement starts) and
/// the thread ends when its current `perform` returns. `.end` retires the thread the same
/// way, cleanly. `shutdown()` joins every thread it started.
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

    public init() {}

    public func attach(kind: Kind, events: WorkerEvents<Kind>) async throws(TaskQueueError) {
        attached.withLock { $0 = Attached(events: events) }
    }

    @inlinable
    public func start(_ id: WorkerID) {
        guard let events = attached.withLock({ $0?.events }) else { return }
        reapFinished()
        let worker = ThreadWorker<Kind>(id: id, events: events)
        workers.withLock { $0[id] = worker }
        if !worker.launch() {
            workers.withLock { _ = $0.removeValue(forKey: id) }
            // Reported from another thread: backend methods must not call events directly.
            let detail = "pthread_create failed"
            Task.detached { events.died(id, detail: detail) }
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
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let joiner = ThreadJoiner(workers: all.map { $0 as any JoinableThread }) { c.resume() }
            joiner.run()
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
    func join()
}

/// Joins threads on a helper thread, then calls `done`.
final class ThreadJoiner: Sendable {
    private let workers: [any JoinableThread]
    private let done: @Sendable () -> Void

    init(workers: [any JoinableThread], done: @escaping @Sendable () -> Void) {
        self.workers = workers
        self.done = done
    }

    func run() {
        if workers.isEmpty { return done() }
        if let thread = startThread({ for w in self.workers { w.join() }; self.done() }) {
            pthread_detach(thread)
        } else {
            for w in workers { w.join() }
            done()
        }
    }
}

/// The body of a thread started by ``startThread(_:)``.
private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Starts an OS thread running `body`; nil when the system refuses.
@usableFromInline
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t? {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().run()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        return nil
    }
    return thread
}

/// One worker thread and its mailbox.
///
/// `@unchecked Sendable`: the mailbox fields are only touched with `mutex` held; `thread` is
/// written once by `launch()` before any other thread can see this object's thread and read
/// only by `join()`, which runs after `stop`.
@usableFromInline
final class ThreadWorker<Kind: TaskKind>: @unchecked Sendable, JoinableThread {
    @usableFromInline let id: WorkerID
    @usableFromInline let events: WorkerEvents<Kind>
    @usableFromInline let cancelFlag = CancellationFlag()
    @usableFromInline let exited = Atomic<Bool>(false)
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline let cond: UnsafeMutablePointer<pthread_cond_t>
    @usableFromInline var thread = pthread_t()
    @usableFromInline var launched = false
    private var joined = false
    // Guarded by `mutex`:
    @usableFromInline var mailbox: [Assignment<Kind>] = []
    @usableFromInline var broadcasts: [Kind.Feedback] = []
    @usableFromInline var stopping = false

    @usableFromInline
    init(id: WorkerID, events: WorkerEvents<Kind>) {
        self.id = id
        self.events = events
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    var hasExited: Bool { exited.load(ordering: .acquiring) }

    @inlinable
    func launch() -> Bool {
        guard let t = startThread({ self.main() }) else { return false }
        thread = t
        launched = true
        return true
    }

    func join() {
        guard launched, !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    @inlinable
    func post(_ batch: [Assignment<Kind>]) {
        pthread_mutex_lock(mutex)
        if mailbox.isEmpty { mailbox = batch } else { mailbox.append(contentsOf: batch) }
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    func post(_ feedback: Kind.Feedback) {
        pthread_mutex_lock(mutex)
        broadcasts.append(feedback)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Stops after the current task; with `abandon`, its answers are discarded and
    /// `perform` sees `isCancelled`.
    func stop(abandon: Bool) {
        if abandon { cancelFlag.set() }
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    @inlinable
    func main() {
        defer { exited.store(true, ordering: .releasing) }
        let route = FeedbackRoute<Kind>()
        let events = self.events
        let id = self.id
        let context = PerformContext<Kind.Feedback>(cancelFlag: cancelFlag) { feedback in
            if let task = route.current { events.feedback(id, task: task, feedback) }
        }
        events.ready(id)
        var completions: [Completion<Kind>] = []
        while true {
            pthread_mutex_lock(mutex)
            while mailbox.isEmpty && broadcasts.isEmpty && !stopping {
                pthread_cond_wait(cond, mutex)
            }
            let batch = mailbox
            mailbox = []
            let feedback = broadcasts
            broadcasts = []
            let stop = stopping
            pthread_mutex_unlock(mutex)

            for f in feedback { Kind.received(broadcast: f) }
            if cancelFlag.isSet { return }
            if batch.isEmpty {
                if stop { return }
                continue
            }
            completions.removeAll(keepingCapacity: true)
            completions.reserveCapacity(batch.count)
            for assignment in batch {
                route.current = assignment.task
                let response = Kind.perform(assignment.request, context: context)
                if cancelFlag.isSet { return }
                completions.append(Completion(seq: assignment.seq, outcome: .response(response)))
            }
            route.current = nil
            events.completed(id, completions)
        }
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
