import DequeModule
import Logging
import SpindleKernel
import Synchronization

/// A master/worker task queue: tasks wait by priority (FIFO within one) and a pool of
/// workers takes the first task each one matches.
///
/// The front door: `enqueue` returns a ``TaskHandle``; ``map(_:priority:options:)`` and
/// ``results(of:priority:options:)`` run many tasks and collect their outcomes:
///
/// ```swift
/// let queue = try await TaskQueue(kind: Squares(), configuration: .init(workers: 4))
/// let squares = try await queue.map(1...1000)            // [Result<Int, TaskFailure>], input order
/// let one = try await queue.enqueue(7, options: .init(retries: 2, timeLimit: .seconds(5)))
/// print(try await one.value)
/// await queue.shutdown()
/// ```
///
/// The scheduling decisions are made by ``TaskScheduler`` under a lock; this shell carries
/// out its actions through a ``WorkerBackend`` (threads by default, child processes with
/// SpindleProcessWorkers), calls the kind's hooks outside the lock and resolves handles.
///
/// Performance: the paths every task takes (enqueueing, the worker events, the scheduler
/// event loop in `run`, the `use` step) are `@inlinable`, and the backend's `start`/`dispatch`
/// are captured as closures in the inlinable `init`, so a client's `TaskQueue<MyKind>` on
/// ``ThreadWorkerBackend`` is specialised in the client's module (docs/taskqueue.md,
/// "Performance"). Control and shutdown paths are not inlinable.
public final class TaskQueue<Kind: TaskKind>: Sendable {
    @usableFromInline
    struct State {
        @usableFromInline var scheduler: TaskScheduler<Kind>
        @usableFromInline var joinWaiters: [CheckedContinuation<TaskQueueSnapshot.Counters, Never>] = []
        @usableFromInline var spaceWaiters: [SpaceWaiter] = []
        @usableFromInline var nextWaiterID: UInt64 = 1
        @usableFromInline var tokenHolders: Set<WorkerID> = []
        @usableFromInline var tokenPending: [WorkerID: (ticket: UInt64, batches: [[Assignment<Kind>]])] = [:]
        /// The task that ticks the scheduler; made under the lock, only while not shut down,
        /// so `shutdown()` always sees (and stops) the one that exists.
        @usableFromInline var ticker: Task<Void, Never>?
        @usableFromInline var deadWaiters: [CheckedContinuation<Void, Never>] = []
        @usableFromInline var shutDown = false
        /// The counters and depth last published as metrics.
        @usableFromInline var published = TaskQueueSnapshot.Counters()
        @usableFromInline var publishedDepth = -1

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

    /// Work to do once the lock is released: hooks, `use`, handles, continuations, tokens.
    @usableFromInline
    typealias Deferred = [@Sendable () -> Void]

    @usableFromInline let state: Mutex<State>
    @usableFromInline let backend: any WorkerBackend<Kind>
    @usableFromInline let calls: BackendCalls
    @usableFromInline let kind: Kind
    @usableFromInline let configuration: Configuration
    @usableFromInline let metrics: QueueMetrics

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
        self.metrics = QueueMetrics(kind: Kind.name, factory: configuration.metricsFactory)
        state = Mutex(State(scheduler: TaskScheduler(kind: kind, workers: configuration.workers,
                                                     prefetch: configuration.prefetch,
                                                     limit: configuration.limit,
                                                     maxStartFailures: configuration.maxStartFailures,
                                                     maxTasksPerWorker: configuration.maxTasksPerWorker,
                                                     restartBackoff: configuration.restartBackoff,
                                                     restartBackoffLimit: configuration.restartBackoffLimit,
                                                     timeLimitGrace: configuration.timeLimitGrace,
                                                     prefetchTarget: configuration.prefetchTarget)))
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
    ///
    /// - Parameters:
    ///   - priority: higher runs first; FIFO within a priority.
    ///   - cancel: the switch that cancels it together with others (and with the tasks it
    ///     injects); a new one by default.
    ///   - deadline: expire it if it has not started by then (the queue's clock).
    ///   - options: `timeout`, `retries` and their backoff, `timeLimit` while running.
    /// - Returns: the task's handle: `await handle.value`, `handle.cancel()`.
    /// - Throws: ``TaskQueueError/shutDown(kind:)``, ``TaskQueueError/noWorkerCanStart(cause:)``
    ///   (no worker can start: at once), ``TaskQueueError/cancelledWhileWaiting(accepted:)``,
    ///   ``TaskQueueError/invalidConfiguration(_:)`` for bad options.
    @inlinable @discardableResult
    public func enqueue(_ task: Kind.Task, priority: QueuePriority = .normal,
                        cancel: CancelSwitch = CancelSwitch(), deadline: MonotonicInstant? = nil,
                        options: TaskOptions = TaskOptions()) async throws(TaskQueueError) -> TaskHandle<Kind.Output> {
        try options.validate()
        let ticket = TaskTicket(options: options)
        try await submit([task][...], tickets: [ticket][...], priority: priority, cancel: cancel,
                         deadline: deadline, options: options)
        return handle(for: ticket)
    }

    /// Queues tasks in order under one cancel switch, suspending while the queue is full.
    /// The reference model's batch form: no handles (outcomes reach the kind's hooks); use
    /// ``map(_:priority:options:)`` or ``results(of:priority:options:)`` for outcomes.
    ///
    /// - Throws: ``TaskQueueError/shutDown(kind:)``, ``TaskQueueError/noWorkerCanStart(cause:)``;
    ///   ``TaskQueueError/cancelledWhileWaiting(accepted:)`` when the calling task is cancelled
    ///   while waiting for room (the first `accepted` tasks were queued, the rest were not).
    @inlinable @discardableResult
    public func enqueue(contentsOf tasks: some Collection<Kind.Task>, priority: QueuePriority = .normal,
                        cancel: CancelSwitch = CancelSwitch(),
                        deadline: MonotonicInstant? = nil) async throws(TaskQueueError) -> CancelSwitch {
        try await submit(Array(tasks)[...], tickets: nil, priority: priority, cancel: cancel, deadline: deadline,
                         options: nil)
        return cancel
    }

    /// Offers `tasks` (with their tickets, if any) until all are queued, waiting for room.
    @inlinable
    func submit(_ tasks: ArraySlice<Kind.Task>, tickets: ArraySlice<TaskTicket>?, priority: QueuePriority,
                cancel: CancelSwitch, deadline: MonotonicInstant?, options: TaskOptions?) async throws(TaskQueueError) {
        var deadline = deadline
        if let timeout = options?.timeout {
            let due = now() + timeout
            deadline = deadline.map { min($0, due) } ?? due
        }
        let timed = deadline != nil || (options.map { $0.retries > 0 || $0.timeLimit != nil } ?? false)
        var rest = tasks
        var restTickets = tickets
        var acceptedSoFar = 0
        while true {
            let accepted = try offer(rest, tickets: restTickets, priority: priority, cancel: cancel,
                                     deadline: deadline, timed: timed)
            rest = rest.dropFirst(accepted)
            restTickets = restTickets?.dropFirst(accepted)
            acceptedSoFar += accepted
            if rest.isEmpty { return }
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
                    if s.shutDown || s.scheduler.freeSpace > 0 || s.scheduler.noWorkerCause != nil
                        || Task.isCancelled { return true }
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
    /// - Throws: ``TaskQueueError/full(limit:)`` when they do not, ``TaskQueueError/shutDown(kind:)``,
    ///   ``TaskQueueError/noWorkerCanStart(cause:)``.
    @inlinable @discardableResult
    public func tryEnqueue(contentsOf tasks: some Collection<Kind.Task>, priority: QueuePriority = .normal,
                           cancel: CancelSwitch = CancelSwitch(),
                           deadline: MonotonicInstant? = nil) throws(TaskQueueError) -> CancelSwitch {
        let accepted = try offer(Array(tasks)[...], tickets: nil, priority: priority, cancel: cancel,
                                 deadline: deadline, timed: deadline != nil, allOrNothing: true)
        guard accepted == tasks.count else { throw .full(limit: configuration.limit) }
        return cancel
    }

    /// Queues one task only if it fits now.
    @inlinable @discardableResult
    public func tryEnqueue(_ task: Kind.Task, priority: QueuePriority = .normal,
                           cancel: CancelSwitch = CancelSwitch(),
                           deadline: MonotonicInstant? = nil) throws(TaskQueueError) -> TaskHandle<Kind.Output> {
        let ticket = TaskTicket(options: TaskOptions())
        let accepted = try offer([task][...], tickets: [ticket][...], priority: priority, cancel: cancel,
                                 deadline: deadline, timed: deadline != nil, allOrNothing: true)
        guard accepted == 1 else { throw .full(limit: configuration.limit) }
        return handle(for: ticket)
    }

    /// Offers tasks to the scheduler; with `allOrNothing`, accepts none unless all fit.
    @inlinable
    func offer(_ tasks: ArraySlice<Kind.Task>, tickets: ArraySlice<TaskTicket>?, priority: QueuePriority,
               cancel: CancelSwitch, deadline: MonotonicInstant?, timed: Bool,
               allOrNothing: Bool = false) throws(TaskQueueError) -> Int {
        if tasks.isEmpty { return 0 }
        let now = now()
        var refusal: TaskQueueError?
        var accepted = 0
        run { s in
            if s.isShuttingDown {
                refusal = .shutDown(kind: Kind.name)
                return []
            }
            if let cause = s.noWorkerCause {
                refusal = .noWorkerCanStart(cause: cause)
                return []
            }
            if allOrNothing && s.freeSpace < tasks.count { return [] }
            let r = s.enqueue(tasks, priority: priority, cancel: cancel, deadline: deadline, tickets: tickets, now: now)
            accepted = r.accepted
            return r.actions
        }
        if let refusal { throw refusal }
        if timed { startTickerIfNeeded() }
        return accepted
    }

    /// A handle on `ticket`'s task that cancels through this queue.
    @inlinable
    func handle(for ticket: TaskTicket) -> TaskHandle<Kind.Output> {
        TaskHandle(ticket: ticket) { [weak self] ticket in
            if let self {
                self.cancel(ticket: ticket)
            } else {
                ticket.resolve(.failure(.shutDown))
            }
        }
    }

    // MARK: Control

    /// Cancels every queued and running task under `cancel` (and the tasks they injected).
    /// Each is reported once through the failure hook before this returns; prefetched ones
    /// are withdrawn from their worker; running ones lose their worker, which is killed
    /// (processes) or abandoned (threads) and replaced.
    public func cancel(_ cancel: CancelSwitch) {
        run { $0.cancel(cancel, now: self.now()) }
    }

    /// Cancels the task of `handle` (see ``TaskHandle/cancel()``).
    public func cancel<Output>(_ handle: TaskHandle<Output>) {
        handle.cancel()
    }

    @usableFromInline
    func cancel(ticket: TaskTicket) {
        run { $0.cancel(ticket: ticket, now: self.now()) }
    }

    /// Cancels everything queued and running.
    public func cancelAll() {
        run { $0.cancelAll(now: self.now()) }
    }

    /// Sends feedback to every live worker; each receives it between tasks. A worker that
    /// cannot decode it reports that through the kind's `broadcastFailed` hook.
    /// - Throws: the feedback could not be encoded (no worker got it).
    public func broadcast(_ feedback: Kind.Feedback) throws(MarshalError) {
        do {
            try state.withLock { (s) throws(MarshalError) -> Void in
                try backend.broadcast(feedback, to: s.scheduler.liveWorkers)
            }
        } catch {
            configuration.logger.error("broadcast could not be encoded", metadata: ["error": "\(error)"])
            state.withLock { $0.scheduler.noteBroadcastFailure() }
            throw error
        }
    }

    /// Returns when nothing is queued or waiting for a retry and no worker holds a task (at
    /// once if so already, or once the queue is shut down).
    /// - Returns: the queue's counters at that moment: how many tasks completed, failed,
    ///   expired, were cancelled or lost with their worker since the queue was made.
    @discardableResult
    public func join() async -> TaskQueueSnapshot.Counters {
        await withCheckedContinuation { (c: CheckedContinuation<TaskQueueSnapshot.Counters, Never>) in
            let now = state.withLock { s -> TaskQueueSnapshot.Counters? in
                if s.shutDown || s.scheduler.isDrained { return s.scheduler.counters }
                s.joinWaiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
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
        let (first, ticker) = state.withLock { s -> (Bool, Task<Void, Never>?) in
            if s.shutDown { return (false, nil) }
            s.shutDown = true
            return (true, s.ticker)
        }
        guard first else { return }
        ticker?.cancel()
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
        // A worker killed between its answer and the kind's decision changes no counter:
        // publish the final worker count regardless.
        state.withLock { s in
            metrics.publish(from: s.published, to: s.scheduler.counters, depth: s.scheduler.queuedCount,
                            liveWorkers: s.scheduler.liveWorkerCount)
            s.published = s.scheduler.counters
            s.publishedDepth = s.scheduler.queuedCount
        }
        let (joins, spaces, counters) = state.withLock { s in
            let all = (s.joinWaiters, s.spaceWaiters.map(\.continuation), s.scheduler.counters)
            s.joinWaiters = []
            s.spaceWaiters = []
            return all
        }
        for w in joins { w.resume(returning: counters) }
        for w in spaces { w.resume() }
        await backend.shutdown()
        let pending = state.withLock { s -> [UInt64] in
            let tickets = s.tokenPending.values.map(\.ticket)
            s.tokenPending = [:]
            return tickets
        }
        if let tokens = configuration.tokens {
            // A waiter that was already granted is released by its grant callback, which no
            // longer finds it pending; releasing here too would give the token back twice.
            for t in pending { tokens.abandon(t) }
            let held = state.withLock { s -> Int in
                let n = s.tokenHolders.count
                s.tokenHolders = []
                return n
            }
            for _ in 0..<held { tokens.release() }
        }
        await ticker?.value
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
            publishMetrics(&s)
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
        case .use(let id, let status, let answers):
            metrics.answered(answers.count)
            deferred.append { self.use(answers, of: id, from: status) }
        case .kill(let id):
            dropToken(of: id, in: &s, deferred: &deferred)
            backend.kill(id)
        case .retire(let id):
            dropToken(of: id, in: &s, deferred: &deferred)
            backend.retire(id)
        case .interrupt(let id, let seq):
            backend.interrupt(id, seq: seq)
        case .withdraw(let id, let seqs):
            backend.withdraw(id, seqs: seqs)
        case .report(let task, let reason, let ticket):
            let kind = self.kind
            deferred.append {
                kind.cancelledExpiredOrWorkerDied(task, reason: reason)
                ticket?.resolve(.failure(reason))
            }
        case .marshalFailed(let task, let error, let ticket):
            let kind = self.kind
            configuration.logger.debug("marshal failure", metadata: ["error": "\(error)"])
            deferred.append {
                kind.marshalFailed(error, task: task)
                ticket?.resolve(.failure(.marshalFailed(direction: error.direction, description: error.description)))
            }
        }
    }

    /// The second step of an answer, outside the lock: the kind's `use` for each response in
    /// order, each handle's output, then the decisions back to the scheduler.
    @inlinable
    func use(_ answers: [TaskScheduler<Kind>.Answered], of id: WorkerID, from status: WorkerStatus<Kind.Competence>) {
        var current = status
        var ending = false
        var decisions: [ResponseDecision<Kind.Task, Kind.Competence>] = []
        decisions.reserveCapacity(answers.count)
        for answer in answers {
            let decision = kind.use(answer.response, for: answer.task, status: current)
            switch decision {
            case .stay(let competence, _): if !ending { current = .old(competence) }
            case .end: ending = true
            }
            decisions.append(decision)
            if let ticket = answer.ticket {
                do {
                    ticket.resolve(.success(try kind.output(from: answer.response, for: answer.task)))
                } catch {
                    ticket.resolve(.failure(.failed(error)))
                }
            }
        }
        run { $0.decided(id, answers: answers, decisions: decisions, now: self.now()) }
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

    /// Publishes the scheduler's counters, live workers and depth as metrics when they changed
    /// since the last event (one comparison per event otherwise). Live workers are counted
    /// only when a worker started, died or retired (`shutdown()` publishes the final count).
    @inlinable
    func publishMetrics(_ s: inout State) {
        let counters = s.scheduler.counters
        let depth = s.scheduler.queuedCount
        guard counters != s.published || depth != s.publishedDepth else { return }
        let old = s.published
        let lifecycle = counters.workersStarted != old.workersStarted || counters.workerDeaths != old.workerDeaths
            || counters.workersRetired != old.workersRetired
        metrics.publish(from: old, to: counters, depth: depth == s.publishedDepth ? nil : depth,
                        liveWorkers: lifecycle ? s.scheduler.liveWorkerCount : nil)
        s.published = counters
        s.publishedDepth = depth
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
            let counters = s.scheduler.counters
            s.joinWaiters = []
            deferred.append { for w in waiters { w.resume(returning: counters) } }
        }
        if !s.spaceWaiters.isEmpty && (s.scheduler.freeSpace > 0 || s.scheduler.noWorkerCause != nil) {
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
            // A queue that is gone still owes the token it was handed.
            if let self { self.tokenGranted(to: id) } else { tokens.release() }
        }
        if let ticket {
            s.tokenPending[id] = (ticket, [batch])
        } else {
            s.tokenHolders.insert(id)
            calls.dispatch(id, batch)
        }
    }

    /// A token arrived for worker `id`. If the worker no longer waits for it (killed, retired,
    /// shut down), the token goes straight back: whoever withdrew the wait did not release it.
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

    /// Worker `id` is going: it withdraws its wait for a token, or gives back the one it holds.
    ///
    /// A withdrawn wait is never released here: if `abandon` fails, the token was already
    /// handed to the wait, and its grant callback (which finds the wait gone) gives it back.
    /// Releasing in both places gave one token back twice and let a shared limit be exceeded.
    @usableFromInline
    func dropToken(of id: WorkerID, in s: inout State, deferred: inout Deferred) {
        guard let tokens = configuration.tokens else { return }
        if let pending = s.tokenPending.removeValue(forKey: id) {
            let ticket = pending.ticket
            deferred.append { tokens.abandon(ticket) }
        }
        if s.tokenHolders.remove(id) != nil {
            deferred.append { tokens.release() }
        }
    }

    /// Starts the task that ticks the scheduler (deadlines, retries, restarts, time limits),
    /// once, unless the queue is shut down.
    @usableFromInline
    func startTickerIfNeeded() {
        let interval = configuration.deadlineCheckInterval
        state.withLock { s in
            guard s.ticker == nil, !s.shutDown else { return }
            s.ticker = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    guard let self else { return }
                    let (stop, due) = self.state.withLock { ($0.shutDown, $0.scheduler.hasTimedWork) }
                    if stop { return }
                    if due { self.run { $0.tick(now: self.now()) } }
                }
            }
        }
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
                self.run { $0.answered(id, completions, now: self.now()) }
            },
            died: { [weak self] id, detail in
                guard let self else { return }
                self.workerDied(id, detail: detail)
            },
            feedback: { [weak self] id, task, feedback in
                self?.kind.forward(feedback, from: id, task: task)
            },
            feedbackFailed: { [weak self] task, error in
                guard let self else { return }
                self.configuration.logger.warning("feedback marshal failure", metadata: ["error": "\(error)"])
                self.kind.marshalFailed(error, task: task)
            },
            broadcastFailed: { [weak self] id, error in
                self?.broadcastFailed(id, error)
            }
        )
    }

    @usableFromInline
    func broadcastFailed(_ id: WorkerID, _ error: MarshalError) {
        configuration.logger.error("a worker could not decode a broadcast",
                                   metadata: ["worker": "\(id)", "error": "\(error)"])
        state.withLock { $0.scheduler.noteBroadcastFailure() }
        kind.broadcastFailed(error, worker: id)
    }

    @usableFromInline
    func workerDied(_ id: WorkerID, detail: String) {
        configuration.logger.info("worker died", metadata: ["worker": "\(id)", "detail": "\(detail)"])
        run { $0.workerDied(id, detail: detail, now: self.now()) }
        if state.withLock({ $0.scheduler.hasTimedWork }) { startTickerIfNeeded() }
    }
}

extension TaskScheduler {
    /// Counts a broadcast that could not be encoded or decoded.
    mutating func noteBroadcastFailure() { _counters.broadcastFailures += 1 }
}
