import DequeModule
import Logging
import SpindleKernel
import Synchronization

/// A master/worker task queue: tasks wait by priority (FIFO within one) and a pool of
/// workers takes the first task each one matches.
///
/// The scheduling decisions are made by ``TaskScheduler`` under a lock; this shell carries
/// out its actions through a ``WorkerBackend`` (threads by default, child processes with
/// SpindleProcessWorkers) and calls the kind's hooks.
///
/// ```swift
/// let queue = try await TaskQueue(kind: Squares(), configuration: .init(workers: 4))
/// try await queue.enqueue(contentsOf: Array(1...1000))
/// await queue.join()
/// await queue.shutdown()
/// ```
///
/// Performance: the paths every task takes (enqueueing, the worker events, the scheduler
/// event loop in `run`) are `@inlinable`, and the backend's `start`/`dispatch` are captured
/// as closures in the inlinable `init`, so a client's `TaskQueue<MyKind>` on
/// ``ThreadWorkerBackend`` is specialised in the client's module (docs/taskqueue.md,
/// "Performance"). Control and shutdown paths are not inlinable.
public final class TaskQueue<Kind: TaskKind>: Sendable {
    @usableFromInline
    struct State {
        @usableFromInline var scheduler: TaskScheduler<Kind>
        @usableFromInline var joinWaiters: [CheckedContinuation<Void, Never>] = []
        @usableFromInline var spaceWaiters: [SpaceWaiter] = []
        @usableFromInline var nextWaiterID: UInt64 = 1
        @usableFromInline var tokenHolders: Set<WorkerID> = []
        @usableFromInline var tokenPending: [WorkerID: (ticket: UInt64, batches: [[Assignment<Kind>]])] = [:]
        @usableFromInline var tickerStarted = false
        @usableFromInline var deadWaiters: [CheckedContinuation<Void, Never>] = []
        @usableFromInline var shutDown = false

        @inlinable
        init(scheduler: TaskScheduler<Kind>) { self.scheduler = scheduler }
    }

    /// An `enqueue` waiting for room.
    @usableFromInline
    struct SpaceWaiter {
        @usableFromInline var id: UInt64
        @usableFromInline var continuation: CheckedContinuation<Void, Never>
    }

    /// The backend methods called per batch, as closures made in `init`, where the backend's
    /// concrete type is known: called through the `any WorkerBackend` existential they would
    /// reach the backend's unspecialised generic code (and, for threads, an unspecialised
    /// worker loop).
    @usableFromInline
    struct BackendCalls: Sendable {
        @usableFromInline let start: @Sendable (WorkerID) -> Void
        @usableFromInline let dispatch: @Sendable (WorkerID, [Assignment<Kind>]) -> Void

        @inlinable
        init(_ backend: some WorkerBackend<Kind>) {
            start = { backend.start($0) }
            dispatch = { backend.dispatch($0, $1) }
        }
    }

    /// Work to do once the lock is released: hooks, continuations, token hand-backs.
    @usableFromInline
    typealias Deferred = [@Sendable () -> Void]

    @usableFromInline let state: Mutex<State>
    @usableFromInline let backend: any WorkerBackend<Kind>
    @usableFromInline let calls: BackendCalls
    @usableFromInline let kind: Kind
    @usableFromInline let configuration: Configuration
    @usableFromInline let ticker = Mutex<Task<Void, Never>?>(nil)

    /// The configuration this queue was made with.
    public var settings: Configuration { configuration }

    /// Creates a queue and starts its workers on `backend`.
    @inlinable
    public init(kind: Kind, backend: some WorkerBackend<Kind>,
                configuration: Configuration = .init()) async throws(TaskQueueError) {
        try configuration.validate()
        self.kind = kind
        self.backend = backend
        self.calls = BackendCalls(backend)
        self.configuration = configuration
        state = Mutex(State(scheduler: TaskScheduler(kind: kind, workers: configuration.workers,
                                                     prefetch: configuration.prefetch,
                                                     limit: configuration.limit,
                                                     maxStartFailures: configuration.maxStartFailures)))
        try await backend.attach(kind: kind, events: makeEvents())
        run { $0.startWorkers() }
    }

    /// Creates a queue of in-process thread workers.
    @inlinable
    public convenience init(kind: Kind, configuration: Configuration = .init()) async throws(TaskQueueError) {
        try await self.init(kind: kind, backend: ThreadWorkerBackend<Kind>(), configuration: configuration)
    }

    // MARK: Enqueueing

    /// Queues a task, suspending while the queue is at its limit.
    /// - Returns: the task's cancel switch (`cancel`, or a new one).
    @inlinable @discardableResult
    public func enqueue(_ task: Kind.Task, priority: QueuePriority = .normal,
                        cancel: CancelSwitch = CancelSwitch(),
                        deadline: MonotonicInstant? = nil) async throws(TaskQueueError) -> CancelSwitch {
        try await enqueue(contentsOf: CollectionOfOne(task), priority: priority, cancel: cancel, deadline: deadline)
    }

    /// Queues tasks in order under one cancel switch, suspending while the queue is full.
    ///
    /// - Throws: ``TaskQueueError/shutDown(kind:)``; ``TaskQueueError/cancelledWhileWaiting(accepted:)``
    ///   when the calling task is cancelled while waiting for room (the first `accepted`
    ///   tasks were queued, the rest were not).
    @inlinable @discardableResult
    public func enqueue(contentsOf tasks: some Collection<Kind.Task>, priority: QueuePriority = .normal,
                        cancel: CancelSwitch = CancelSwitch(),
                        deadline: MonotonicInstant? = nil) async throws(TaskQueueError) -> CancelSwitch {
        var rest = Array(tasks)[...]
        var acceptedSoFar = 0
        while true {
            let accepted = try offer(rest, priority: priority, cancel: cancel, deadline: deadline)
            rest = rest.dropFirst(accepted)
            acceptedSoFar += accepted
            if rest.isEmpty { return cancel }
            if Task.isCancelled { throw .cancelledWhileWaiting(accepted: acceptedSoFar) }
            await waitForRoom()
        }
    }

    /// Suspends until the queue has room, it shuts down, or the calling task is cancelled.
    @usableFromInline
    func waitForRoom() async {
        let id = state.withLock { s -> UInt64 in
            s.nextWaiterID += 1
            return s.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.shutDown || s.scheduler.freeSpace > 0 || Task.isCancelled { return true }
                    s.spaceWaiters.append(SpaceWaiter(id: id, continuation: c))
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                guard let i = s.spaceWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.spaceWaiters.remove(at: i).continuation
            }
            waiter?.resume()
        }
    }

    /// Queues tasks only if all fit now.
    /// - Throws: ``TaskQueueError/full(limit:)`` when they do not, ``TaskQueueError/shutDown(kind:)``.
    @inlinable @discardableResult
    public func tryEnqueue(contentsOf tasks: some Collection<Kind.Task>, priority: QueuePriority = .normal,
                           cancel: CancelSwitch = CancelSwitch(),
                           deadline: MonotonicInstant? = nil) throws(TaskQueueError) -> CancelSwitch {
        let accepted = try offer(Array(tasks)[...], priority: priority, cancel: cancel, deadline: deadline,
                                 allOrNothing: true)
        guard accepted == tasks.count else { throw .full(limit: configuration.limit) }
        return cancel
    }

    /// Queues one task only if it fits now.
    @inlinable @discardableResult
    public func tryEnqueue(_ task: Kind.Task, priority: QueuePriority = .normal,
                           cancel: CancelSwitch = CancelSwitch(),
                           deadline: MonotonicInstant? = nil) throws(TaskQueueError) -> CancelSwitch {
        try tryEnqueue(contentsOf: CollectionOfOne(task), priority: priority, cancel: cancel, deadline: deadline)
    }

    /// Offers tasks to the scheduler; with `allOrNothing`, accepts none unless all fit.
    @inlinable
    func offer(_ tasks: ArraySlice<Kind.Task>, priority: QueuePriority, cancel: CancelSwitch,
               deadline: MonotonicInstant?, allOrNothing: Bool = false) throws(TaskQueueError) -> Int {
        if tasks.isEmpty { return 0 }
        let now = now()
        var shutDown = false
        var accepted = 0
        run { s in
            if s.isShuttingDown {
                shutDown = true
                return []
            }
            if allOrNothing && s.freeSpace < tasks.count { return [] }
            let r = s.enqueue(tasks, priority: priority, cancel: cancel, deadline: deadline, now: now)
            accepted = r.accepted
            return r.actions
        }
        if shutDown { throw .shutDown(kind: Kind.name) }
        if deadline != nil { startTickerIfNeeded() }
        return accepted
    }

    // MARK: Control

    /// Cancels every queued and running task under `cancel` (and the tasks they injected).
    /// Each is reported once through the failure hook before this returns; running ones
    /// lose their worker, which is killed (processes) or abandoned (threads) and replaced.
    public func cancel(_ cancel: CancelSwitch) {
        run { $0.cancel(cancel, now: self.now()) }
    }

    /// Cancels everything queued and running.
    public func cancelAll() {
        run { $0.cancelAll(now: self.now()) }
    }

    /// Sends feedback to every live worker; each receives it between tasks.
    public func broadcast(_ feedback: Kind.Feedback) {
        state.withLock { s in
            backend.broadcast(feedback, to: s.scheduler.liveWorkers)
        }
    }

    /// Returns when nothing is queued and no worker holds a task (at once if so already,
    /// or once the queue is shut down).
    public func join() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.shutDown || s.scheduler.isDrained { return true }
                s.joinWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    /// The queue's state: queued tasks, each worker's state, counters.
    public func snapshot() -> TaskQueueSnapshot {
        state.withLock { $0.scheduler.snapshot() }
    }

    /// Shuts the queue down: nothing more is accepted, queued tasks are reported
    /// ``TaskFailure/shutDown``, running tasks get `shutdownGrace` to finish, then their
    /// workers are killed. Afterwards no worker thread or process remains.
    public func shutdown() async {
        let first = state.withLock { s -> Bool in
            if s.shutDown { return false }
            s.shutDown = true
            return true
        }
        guard first else { return }
        ticker.withLock { $0?.cancel() }
        run { $0.beginShutdown() }
        // Graceful phase: running tasks have `shutdownGrace` to be answered (each answer
        // retires its worker); then whatever still runs is killed.
        let grace = configuration.shutdownGrace
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitUntilAllWorkersDead() }
            group.addTask {
                try? await Task.sleep(for: grace)
                if !Task.isCancelled { self.run { $0.forceShutdown() } }
            }
            await group.next()
            group.cancelAll()
        }
        run { $0.forceShutdown() }
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            let all = s.joinWaiters + s.spaceWaiters.map(\.continuation)
            s.joinWaiters = []
            s.spaceWaiters = []
            return all
        }
        for w in waiters { w.resume() }
        await backend.shutdown()
        let pending = state.withLock { s -> [UInt64] in
            let tickets = s.tokenPending.values.map(\.ticket)
            s.tokenPending = [:]
            return tickets
        }
        if let tokens = configuration.tokens {
            for t in pending where !tokens.abandon(t) { tokens.release() }
            let held = state.withLock { s -> Int in
                let n = s.tokenHolders.count
                s.tokenHolders = []
                return n
            }
            for _ in 0..<held { tokens.release() }
        }
        _ = await ticker.withLock { $0 }?.value
    }

    // MARK: The engine

    @inlinable
    func now() -> MonotonicInstant { configuration.clock.now() }

    /// Runs one scheduler event under the lock, carries out its backend actions there (so
    /// they reach the backend in the order they were decided), and runs hooks afterwards.
    @inlinable @discardableResult
    func run(_ event: (inout TaskScheduler<Kind>) -> [TaskScheduler<Kind>.Action]) -> Int {
        var deferred: Deferred = []
        let count = state.withLock { s -> Int in
            let actions = event(&s.scheduler)
            for action in actions { carryOut(action, in: &s, deferred: &deferred) }
            settleWaiters(&s, deferred: &deferred)
            return actions.count
        }
        for work in deferred { work() }
        return count
    }

    @inlinable
    func carryOut(_ action: TaskScheduler<Kind>.Action, in s: inout State, deferred: inout Deferred) {
        switch action {
        case .start(let id):
            calls.start(id)
        case .dispatch(let id, let batch):
            dispatch(id, batch, in: &s, deferred: &deferred)
        case .kill(let id):
            dropToken(of: id, in: &s, deferred: &deferred)
            backend.kill(id)
        case .retire(let id):
            dropToken(of: id, in: &s, deferred: &deferred)
            backend.retire(id)
        case .report(let task, let reason):
            let kind = self.kind
            deferred.append { kind.cancelledExpiredOrWorkerDied(task, reason: reason) }
        case .marshalFailed(let task, let error):
            let kind = self.kind
            configuration.logger.debug("marshal failure", metadata: ["error": "\(error)"])
            deferred.append { kind.marshalFailed(error, task: task) }
        }
    }

    private func waitUntilAllWorkersDead() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.scheduler.allWorkersDead { return true }
                s.deadWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    @inlinable
    func settleWaiters(_ s: inout State, deferred: inout Deferred) {
        if !s.deadWaiters.isEmpty && s.scheduler.allWorkersDead {
            let waiters = s.deadWaiters
            s.deadWaiters = []
            deferred.append { for w in waiters { w.resume() } }
        }
        if !s.joinWaiters.isEmpty && s.scheduler.isDrained {
            let waiters = s.joinWaiters
            s.joinWaiters = []
            deferred.append { for w in waiters { w.resume() } }
        }
        if !s.spaceWaiters.isEmpty && s.scheduler.freeSpace > 0 {
            let waiters = s.spaceWaiters.map(\.continuation)
            s.spaceWaiters = []
            deferred.append { for w in waiters { w.resume() } }
        }
        if let tokens = configuration.tokens, !s.tokenHolders.isEmpty {
            releaseIdleTokens(tokens, &s, deferred: &deferred)
        }
    }

    /// A worker that holds no task gives its token back.
    @usableFromInline
    func releaseIdleTokens(_ tokens: ExecutionTokens, _ s: inout State, deferred: inout Deferred) {
        for id in s.tokenHolders where !s.scheduler.holdsWork(id) {
            s.tokenHolders.remove(id)
            deferred.append { tokens.release() }
        }
    }

    @inlinable
    func dispatch(_ id: WorkerID, _ batch: [Assignment<Kind>], in s: inout State, deferred: inout Deferred) {
        guard let tokens = configuration.tokens, !s.tokenHolders.contains(id) else {
            calls.dispatch(id, batch)
            return
        }
        dispatch(id, batch, waitingFor: tokens, in: &s)
    }

    /// Dispatches once worker `id` holds an execution token (at once if one is free).
    @usableFromInline
    func dispatch(_ id: WorkerID, _ batch: [Assignment<Kind>], waitingFor tokens: ExecutionTokens,
                  in s: inout State) {
        if s.tokenPending[id] != nil {
            s.tokenPending[id]!.batches.append(batch)
            return
        }
        let ticket = tokens.acquire(priority: configuration.tokenPriority) { [weak self] in
            self?.tokenGranted(to: id)
        }
        if let ticket {
            s.tokenPending[id] = (ticket, [batch])
        } else {
            s.tokenHolders.insert(id)
            calls.dispatch(id, batch)
        }
    }

    private func tokenGranted(to id: WorkerID) {
        let tokens = configuration.tokens
        let granted = state.withLock { s -> Bool in
            guard let pending = s.tokenPending.removeValue(forKey: id) else { return false }
            s.tokenHolders.insert(id)
            for batch in pending.batches { calls.dispatch(id, batch) }
            return true
        }
        if !granted { tokens?.release() }
    }

    @usableFromInline
    func dropToken(of id: WorkerID, in s: inout State, deferred: inout Deferred) {
        guard let tokens = configuration.tokens else { return }
        if let pending = s.tokenPending.removeValue(forKey: id) {
            let ticket = pending.ticket
            deferred.append { if !tokens.abandon(ticket) { tokens.release() } }
        }
        if s.tokenHolders.remove(id) != nil {
            deferred.append { tokens.release() }
        }
    }

    @usableFromInline
    func startTickerIfNeeded() {
        let start = state.withLock { s -> Bool in
            if s.tickerStarted || s.shutDown { return false }
            s.tickerStarted = true
            return true
        }
        guard start else { return }
        let interval = configuration.deadlineCheckInterval
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self else { return }
                if self.state.withLock({ $0.scheduler.hasDeadlines }) {
                    self.run { $0.tick(now: self.now()) }
                }
            }
        }
        ticker.withLock { $0 = task }
    }

    @inlinable
    func makeEvents() -> WorkerEvents<Kind> {
        // The sink holds the queue weakly: a backend outliving its queue reports into nothing.
        WorkerEvents<Kind>(
            ready: { [weak self] id in
                guard let self else { return }
                self.run { $0.workerReady(id, now: self.now()) }
            },
            completed: { [weak self] id, completions in
                guard let self else { return }
                self.run { $0.completed(id, completions, now: self.now()) }
            },
            died: { [weak self] id, detail in
                guard let self else { return }
                self.configuration.logger.info("worker died", metadata: ["worker": "\(id)", "detail": "\(detail)"])
                self.run { $0.workerDied(id, detail: detail, now: self.now()) }
            },
            feedback: { [weak self] id, task, feedback in
                self?.kind.forward(feedback, from: id, task: task)
            },
            feedbackFailed: { [weak self] task, error in
                self?.kind.marshalFailed(error, task: task)
            }
        )
    }
}
