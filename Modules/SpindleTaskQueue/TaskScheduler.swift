import DequeModule
import SpindleKernel

/// The queue's scheduling logic as a value-type state machine: events in, actions out, no I/O.
///
/// ``TaskQueue`` wraps it in a lock and carries out its actions through a ``WorkerBackend``;
/// tests drive it directly on a `ManualClock` with no threads.
///
/// ```
///  enqueue ──┐                      ┌─▶ start(worker)           spawn a worker
///  ready ────┤                      ├─▶ dispatch(worker, […])   hand over assignments
///  answered ─┤                      ├─▶ use(worker, status, […]) call the kind's `use` (unlocked)
///  decided ──┼─▶  TaskScheduler  ───┼─▶ kill / retire(worker)
///  died ─────┤   lanes · slots      ├─▶ interrupt(worker, seq)  raise a task's cancel flag
///  cancel ───┤   retries · limits   ├─▶ withdraw(worker, seqs)  take back prefetched tasks
///  tick(now) ┘                      ├─▶ report(task?, why, t)   the failure hook, the handle
///                                   └─▶ marshalFailed(task, e, t)
/// ```
///
/// Answers take two steps so that the kind's `use` runs outside the shell's lock:
/// ``answered(_:_:now:)`` takes them out of the worker and returns a `use` action with the
/// worker's status; the shell calls `use` for each answer, in order, then reports the
/// decisions with ``decided(_:answers:decisions:now:)``. Until then the worker gets no new
/// task (its status is being decided). ``completed(_:_:now:)`` does both at once.
///
/// Prefetch: with `prefetch > 1` a worker holds up to that many assignments; each is matched
/// against the worker's status when dispatched. If a response ends the worker, the
/// assignments behind it are requeued at the front of their priority (a thread worker may
/// already have performed them; that result is discarded and the task runs again). A
/// cancelled task that is only prefetched is withdrawn; the worker keeps running the others.
///
/// Performance: the per-task paths (`enqueue`, `answered`, `decided`, `fill` and what they
/// call) are `@inlinable`, so a client's `TaskScheduler<MyKind>` is specialised in the
/// client's module rather than run generically (see docs/taskqueue.md, "Performance"). Rare
/// events (cancellation, deaths, ticks, shutdown, snapshots) are not.
public struct TaskScheduler<Kind: TaskKind> {
    /// A task waiting in a lane or held by a worker.
    @usableFromInline
    struct Entry {
        @usableFromInline var seq: UInt64
        @usableFromInline var task: Kind.Task
        @usableFromInline var priority: QueuePriority
        @usableFromInline var cancel: CancelSwitch
        @usableFromInline var deadline: MonotonicInstant?
        /// Present for tasks enqueued with a handle: options, attempts, outcome.
        @usableFromInline var ticket: TaskTicket?

        @inlinable
        init(seq: UInt64, task: Kind.Task, priority: QueuePriority, cancel: CancelSwitch,
             deadline: MonotonicInstant?, ticket: TaskTicket? = nil) {
            self.seq = seq
            self.task = task
            self.priority = priority
            self.cancel = cancel
            self.deadline = deadline
            self.ticket = ticket
        }
    }

    @usableFromInline
    struct Lane {
        @usableFromInline var priority: QueuePriority
        @usableFromInline var queue: Deque<Entry> = []

        @inlinable
        init(priority: QueuePriority) { self.priority = priority }
    }

    @usableFromInline
    enum Phase: Equatable { case starting, ready, dead }

    @usableFromInline
    struct Slot {
        @usableFromInline var id: WorkerID
        @usableFromInline var phase: Phase = .starting
        @usableFromInline var status: WorkerStatus<Kind.Competence> = .fresh
        @usableFromInline var inFlight: Deque<Entry> = []
        /// Answers over every incarnation of the slot.
        @usableFromInline var completed = 0
        /// Answers of the current incarnation (for `maxTasksPerWorker`).
        @usableFromInline var served = 0
        /// `use` batches handed to the shell and not decided yet.
        @usableFromInline var deciding = 0
        @usableFromInline var startFailures = 0
        /// When a slot that failed to start `maxStartFailures` times starts again.
        var restartAt: MonotonicInstant?
        /// Since when the worker has been working without a pause (its last answer, or the
        /// dispatch that found it idle), for `prefetchTarget`; `.max` when idle.
        @usableFromInline var busySince: UInt64 = .max
        /// Nanoseconds per task this slot's workers took lately (moving average; 0: unknown).
        @usableFromInline var nanosecondsPerTask: Double = 0

        init(id: WorkerID) { self.id = id }
    }

    /// A response waiting for the kind's `use`, with what the decision needs.
    public struct Answered: Sendable {
        public let task: Kind.Task
        public let response: Kind.Response
        @usableFromInline let priority: QueuePriority
        @usableFromInline let cancel: CancelSwitch
        @usableFromInline let ticket: TaskTicket?

        @inlinable
        init(task: Kind.Task, response: Kind.Response, priority: QueuePriority, cancel: CancelSwitch,
             ticket: TaskTicket?) {
            self.task = task
            self.response = response
            self.priority = priority
            self.cancel = cancel
            self.ticket = ticket
        }
    }

    /// What the shell must do.
    public enum Action: Sendable {
        case start(WorkerID)
        case dispatch(WorkerID, [Assignment<Kind>])
        case kill(WorkerID)
        case retire(WorkerID)
        /// Raise the cancel flag of task `seq` on the worker (it ran past its time limit).
        case interrupt(WorkerID, seq: UInt64)
        /// Take back prefetched tasks the worker has not started (they were cancelled).
        case withdraw(WorkerID, seqs: [UInt64])
        /// Call `use` for each answer in order, starting from `status`, then report the
        /// decisions with `decided`.
        case use(WorkerID, status: WorkerStatus<Kind.Competence>, answers: [Answered])
        case report(Kind.Task?, TaskFailure, TaskTicket?)
        case marshalFailed(Kind.Task, MarshalError, TaskTicket?)
    }

    public let kind: Kind
    /// Most tasks a worker holds at once (1 = the reference's one task at a time).
    public let prefetch: Int
    /// Most tasks queued by `enqueue`; injected tasks are never refused.
    public let limit: Int
    /// Consecutive failed starts after which a slot waits (`restartBackoff`) before the next.
    public let maxStartFailures: Int
    /// Tasks after which a worker is retired and replaced (nil: no limit).
    public let maxTasksPerWorker: Int?
    /// The first wait before a slot that could not start is tried again; doubles per failure.
    public let restartBackoff: Duration
    /// The longest such wait.
    public let restartBackoffLimit: Duration
    /// How long a task past its time limit has, once its cancel flag is up, before its
    /// worker is killed.
    public let timeLimitGrace: Duration
    /// When set, a worker holds only as many tasks (up to `prefetch`) as it takes about this
    /// long to run, judged by how long its recent tasks took: fast tasks are pipelined deeply,
    /// slow ones go one at a time (so they spread over the workers).
    public let prefetchTarget: Duration?
    @usableFromInline let prefetchTargetNanoseconds: Double

    @usableFromInline var lanes: [Lane] = []
    @usableFromInline var slots: [Slot]
    /// Tasks waiting out a retry backoff.
    @usableFromInline var delayed: [Entry] = []
    @usableFromInline var nextSeq: UInt64 = 1
    @usableFromInline var rotation = 0
    @usableFromInline var deadlineCount = 0
    /// `use` batches handed out and not decided yet, over all slots.
    @usableFromInline var _deciding = 0
    // Storage behind the read-only public properties below: inlinable code cannot use a
    // `private(set)` setter, and `@usableFromInline` cannot be put on one.
    @usableFromInline var _queuedCount = 0
    @usableFromInline var _counters = TaskQueueSnapshot.Counters()
    @usableFromInline var _isShuttingDown = false
    @usableFromInline var _noWorkerCause: String?

    /// Tasks waiting in the lanes (not held by a worker, not waiting for a retry).
    @inlinable public var queuedCount: Int { _queuedCount }
    /// Totals since the scheduler was created.
    @inlinable public var counters: TaskQueueSnapshot.Counters { _counters }
    /// Whether ``beginShutdown()`` was called: nothing more is accepted.
    @inlinable public var isShuttingDown: Bool { _isShuttingDown }
    /// Why no worker can start, while every slot has failed to start `maxStartFailures` times
    /// in a row: `enqueue` is then refused. Cleared when a worker becomes ready.
    @inlinable public var noWorkerCause: String? { _noWorkerCause }

    /// Creates a scheduler with `workers` slots; call ``startWorkers()`` for the first
    /// `start` actions.
    public init(kind: Kind, workers: Int, prefetch: Int = 1, limit: Int = .max, maxStartFailures: Int = 3,
                maxTasksPerWorker: Int? = nil, restartBackoff: Duration = .milliseconds(250),
                restartBackoffLimit: Duration = .seconds(30), timeLimitGrace: Duration = .seconds(1),
                prefetchTarget: Duration? = nil) {
        self.kind = kind
        self.prefetch = max(1, prefetch)
        self.limit = max(1, limit)
        self.maxStartFailures = max(1, maxStartFailures)
        self.maxTasksPerWorker = maxTasksPerWorker.map { max(1, $0) }
        self.restartBackoff = max(.zero, restartBackoff)
        self.restartBackoffLimit = max(self.restartBackoff, restartBackoffLimit)
        self.timeLimitGrace = max(.zero, timeLimitGrace)
        self.prefetchTarget = prefetchTarget
        prefetchTargetNanoseconds = prefetchTarget.map { Double($0.components.seconds) * 1e9 + Double($0.components.attoseconds) / 1e9 } ?? 0
        slots = (0..<max(0, workers)).map { Slot(id: WorkerID(slot: $0, generation: 0)) }
    }

    // MARK: Queries

    /// Queue empty, no retry waiting, no worker holding a task and no answer being used.
    @inlinable
    public var isDrained: Bool {
        _queuedCount == 0 && _deciding == 0 && delayed.isEmpty && !slots.contains { !$0.inFlight.isEmpty }
    }

    /// How many more tasks `enqueue` accepts now.
    @inlinable
    public var freeSpace: Int { _isShuttingDown ? 0 : max(0, limit - _queuedCount) }

    /// Whether every worker has gone (after shutdown, or when none could start).
    @inlinable
    public var allWorkersDead: Bool { slots.allSatisfy { $0.phase == .dead } }

    /// The live worker ids.
    public var liveWorkers: [WorkerID] { slots.filter { $0.phase != .dead }.map(\.id) }

    /// How many workers are live (starting or ready).
    @inlinable
    var liveWorkerCount: Int {
        var n = 0
        for slot in slots where slot.phase != .dead { n += 1 }
        return n
    }

    /// The current worker of each slot.
    public var workerIDs: [WorkerID] { slots.map(\.id) }

    /// Whether worker `id` is live and holds at least one task (or an answer being used).
    @inlinable
    public func holdsWork(_ id: WorkerID) -> Bool {
        guard let i = index(of: id) else { return false }
        return slots[i].phase == .ready && (!slots[i].inFlight.isEmpty || slots[i].deciding > 0)
    }

    /// The sequence numbers worker `id` holds, in dispatch order.
    public func inFlightSeqs(of id: WorkerID) -> [UInt64] {
        guard let i = index(of: id) else { return [] }
        return slots[i].inFlight.map(\.seq)
    }

    /// Whether any queued task has a deadline.
    @inlinable
    public var hasDeadlines: Bool { deadlineCount > 0 }

    /// Whether ``tick(now:)`` has anything to do: deadlines, retries waiting, slots waiting to
    /// restart, or running tasks with a time limit.
    public var hasTimedWork: Bool {
        deadlineCount > 0 || !delayed.isEmpty
            || slots.contains { $0.restartAt != nil || $0.inFlight.first?.ticket?.timeLimit != nil }
    }

    public func snapshot() -> TaskQueueSnapshot {
        var byPriority: [QueuePriority: Int] = [:]
        for lane in lanes where !lane.queue.isEmpty { byPriority[lane.priority] = lane.queue.count }
        let workers = slots.map { slot -> TaskQueueSnapshot.Worker in
            let state: TaskQueueSnapshot.WorkerState
            switch slot.phase {
            case .starting: state = .starting
            case .dead: state = .dead
            case .ready:
                if let first = slot.inFlight.first {
                    state = .busy(task: kind.name(of: first.task), inFlight: slot.inFlight.count)
                } else {
                    state = .idle
                }
            }
            return .init(id: slot.id, state: state, completed: slot.completed)
        }
        return TaskQueueSnapshot(queued: _queuedCount, waitingForRetry: delayed.count, noWorkerCause: _noWorkerCause,
                                 queuedByPriority: byPriority, workers: workers, counters: _counters)
    }

    // MARK: Events

    /// The first `start` action for every slot.
    public mutating func startWorkers() -> [Action] {
        _counters.workersStarted += slots.count
        return slots.map { .start($0.id) }
    }

    /// Queues tasks (as many as fit under the limit unless `force`), then dispatches.
    /// `tickets`, when given, holds one ticket per task (its handle and options).
    /// - Returns: how many of `tasks` were accepted (a prefix), and the actions. Nothing is
    ///   accepted while shutting down or while ``noWorkerCause`` is set.
    @inlinable
    public mutating func enqueue(_ tasks: some Collection<Kind.Task>, priority: QueuePriority,
                                 cancel: CancelSwitch, deadline: MonotonicInstant?,
                                 tickets: ArraySlice<TaskTicket>? = nil,
                                 now: MonotonicInstant, force: Bool = false) -> (accepted: Int, actions: [Action]) {
        guard !_isShuttingDown, _noWorkerCause == nil else { return (0, []) }
        let room = force ? tasks.count : min(tasks.count, freeSpace)
        guard room > 0 else { return (0, []) }
        let laneIndex = lane(for: priority)
        lanes[laneIndex].queue.reserveCapacity(lanes[laneIndex].queue.count + room)
        if let tickets {
            var t = tickets.startIndex
            for task in tasks.prefix(room) {
                lanes[laneIndex].queue.append(Entry(seq: nextSeq, task: task, priority: priority,
                                                    cancel: cancel, deadline: deadline, ticket: tickets[t]))
                nextSeq &+= 1
                t += 1
            }
        } else {
            for task in tasks.prefix(room) {
                lanes[laneIndex].queue.append(Entry(seq: nextSeq, task: task, priority: priority,
                                                    cancel: cancel, deadline: deadline))
                nextSeq &+= 1
            }
        }
        if deadline != nil { deadlineCount += room }
        _queuedCount += room
        _counters.enqueued += room
        var actions: [Action] = []
        fill(now: now, into: &actions)
        return (room, actions)
    }

    /// A started worker is ready for tasks.
    @inlinable
    public mutating func workerReady(_ id: WorkerID, now: MonotonicInstant) -> [Action] {
        guard let i = index(of: id), slots[i].phase == .starting else { return [] }
        slots[i].phase = .ready
        slots[i].startFailures = 0
        slots[i].served = 0
        _noWorkerCause = nil
        var actions: [Action] = []
        if _isShuttingDown {
            slots[i].phase = .dead
            _counters.workersRetired += 1
            actions.append(.retire(id))
        } else {
            fill(now: now, into: &actions)
        }
        return actions
    }

    /// A worker answered assignments, in the order they were dispatched: the first of the two
    /// steps. Responses come back in one `use` action for the shell; failures are reported
    /// (or retried) at once.
    @inlinable
    public mutating func answered(_ id: WorkerID, _ completions: some Sequence<Completion<Kind>>,
                                  now: MonotonicInstant) -> [Action] {
        guard let i = index(of: id), slots[i].phase == .ready else { return [] }
        var actions: [Action] = []
        var answers: [Answered] = []
        var taken = 0
        defer { if prefetchTarget != nil { measure(slot: i, answers: taken, now: now) } }
        for completion in completions {
            guard let entry = takeInFlight(slot: i, seq: completion.seq) else { continue }
            taken += 1
            slots[i].completed += 1
            slots[i].served += 1
            _counters.completed += 1
            if let ticket = entry.ticket, ticket.timeLimit != nil, ticket.interruptedAt != nil {
                timedOut(entry, into: &actions)
                continue
            }
            switch completion.outcome {
            case .response(let response):
                answers.append(Answered(task: entry.task, response: response, priority: entry.priority,
                                        cancel: entry.cancel, ticket: entry.ticket))
            case .marshalFailed(let error):
                _counters.marshalFailures += 1
                actions.append(.marshalFailed(entry.task, error, entry.ticket))
            case .failed(let error, let retryable):
                if retryable && retry(entry, now: now, into: &actions) { continue }
                _counters.failed += 1
                actions.append(.report(entry.task, .failed(error), entry.ticket))
            }
        }
        if !answers.isEmpty {
            slots[i].deciding += 1
            _deciding += 1
            actions.append(.use(id, status: slots[i].status, answers: answers))
            return actions
        }
        afterAnswers(slot: i, ending: false, now: now, into: &actions)
        return actions
    }

    /// The second step: what `use` decided for each answer of a `use` action, in order.
    /// `.stay` injects tasks under the parent's switch and priority; `.end` (or reaching
    /// `maxTasksPerWorker`) retires the worker and starts a fresh one.
    @inlinable
    public mutating func decided(_ id: WorkerID, answers: [Answered],
                                 decisions: [ResponseDecision<Kind.Task, Kind.Competence>],
                                 now: MonotonicInstant) -> [Action] {
        _deciding -= 1
        var actions: [Action] = []
        let live = index(of: id).map { slots[$0].phase == .ready } ?? false
        var ending = false
        var status: WorkerStatus<Kind.Competence> = .fresh
        if live, let i = index(of: id) {
            slots[i].deciding -= 1
            status = slots[i].status
        }
        for (k, decision) in decisions.enumerated() {
            switch decision {
            case .stay(let competence, let inject):
                if !ending { status = .old(competence) }
                guard !inject.isEmpty else { continue }
                let parent = answers[k]
                if _isShuttingDown {
                    _counters.shutDown += inject.count
                    for task in inject { actions.append(.report(task, .shutDown, nil)) }
                    continue
                }
                let laneIndex = lane(for: parent.priority)
                for task in inject {
                    lanes[laneIndex].queue.append(Entry(seq: nextSeq, task: task, priority: parent.priority,
                                                        cancel: parent.cancel, deadline: nil))
                    nextSeq &+= 1
                }
                _queuedCount += inject.count
                _counters.enqueued += inject.count
            case .end:
                ending = true
            }
        }
        if live, let i = index(of: id) {
            slots[i].status = status
            afterAnswers(slot: i, ending: ending, now: now, into: &actions)
        } else {
            fill(now: now, into: &actions)
        }
        return actions
    }

    /// Both steps at once: `use` runs here, inside the caller's lock if it holds one (the
    /// reference model's shape; tests drive the scheduler this way). Handles of tasks with
    /// tickets are not resolved by this path: the shell does that when it runs `use`.
    @inlinable
    public mutating func completed(_ id: WorkerID, _ completions: some Sequence<Completion<Kind>>,
                                   now: MonotonicInstant) -> [Action] {
        var out: [Action] = []
        for action in answered(id, completions, now: now) {
            guard case .use(let worker, let status, let answers) = action else {
                out.append(action)
                continue
            }
            var current = status
            var ending = false
            var decisions: [ResponseDecision<Kind.Task, Kind.Competence>] = []
            decisions.reserveCapacity(answers.count)
            for answer in answers {
                let decision = kind.use(answer.response, for: answer.task, status: current)
                if case .stay(let c, _) = decision, !ending { current = .old(c) }
                if case .end = decision { ending = true }
                decisions.append(decision)
            }
            out += decided(worker, answers: answers, decisions: decisions, now: now)
        }
        return out
    }

    /// A worker died (crash, kill -9, closed pipe, could not start). Its running task is
    /// retried (when its options allow) or reported; tasks prefetched behind it are requeued;
    /// a replacement is started — after a backoff once the slot failed to start
    /// `maxStartFailures` times in a row. When that is true of every slot, queued tasks fail
    /// with ``TaskFailure/noWorker(cause:)`` and ``noWorkerCause`` refuses new ones.
    public mutating func workerDied(_ id: WorkerID, detail: String, now: MonotonicInstant) -> [Action] {
        guard let i = index(of: id), slots[i].phase != .dead else { return [] }
        var actions: [Action] = []
        let wasStarting = slots[i].phase == .starting
        let lastState = "\(id) \(detail)"
        _counters.workerDeaths += 1
        if let running = slots[i].inFlight.popFirst() {
            if !retry(running, now: now, into: &actions) {
                _counters.lostWithWorker += 1
                actions.append(.report(running.task, .workerDied(attempts: running.ticket?.attempts ?? 1,
                                                                  lastState: lastState), running.ticket))
            }
        } else if !_isShuttingDown {
            actions.append(.report(nil, .workerDied(attempts: 0, lastState: lastState), nil))
        }
        requeueInFlight(slot: i, into: &actions)
        let failures = wasStarting ? slots[i].startFailures + 1 : 0
        slots[i].phase = .dead
        slots[i].deciding = 0
        slots[i].startFailures = failures
        if !_isShuttingDown {
            if failures < maxStartFailures {
                replace(slot: i, into: &actions)
            } else {
                slots[i].restartAt = now + restartWait(afterFailures: failures)
                failEverythingIfNoWorkerLeft(cause: lastState, into: &actions)
            }
        }
        fill(now: now, into: &actions)
        return actions
    }

    /// Cancels every task under `cancel`: queued and waiting ones are removed, prefetched ones
    /// withdrawn, running ones have their worker killed and replaced. Each is reported once
    /// as cancelled.
    public mutating func cancel(_ cancel: CancelSwitch, now: MonotonicInstant) -> [Action] {
        cancelMatching({ $0.cancel == cancel }, now: now)
    }

    /// Cancels the task holding `ticket`, wherever it is.
    public mutating func cancel(ticket: TaskTicket, now: MonotonicInstant) -> [Action] {
        cancelMatching({ $0.ticket === ticket }, now: now)
    }

    /// Cancels everything queued and running.
    public mutating func cancelAll(now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        removeQueued(where: { _ in true }, reason: .cancelled, into: &actions)
        removeDelayed(where: { _ in true }, reason: .cancelled, into: &actions)
        for i in slots.indices where slots[i].phase == .ready && !slots[i].inFlight.isEmpty {
            killAndReplace(slot: i, reporting: { _ in true }, reason: .cancelled, into: &actions)
        }
        return actions
    }

    /// Time-driven work: expires queued tasks whose deadline is at or before `now`, requeues
    /// retries whose backoff ended, restarts slots whose restart wait ended, raises the cancel
    /// flag of tasks past their time limit and kills the workers of those still running
    /// `timeLimitGrace` later.
    public mutating func tick(now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        if deadlineCount > 0 {
            removeQueued(where: { $0.deadline.map { $0 <= now } ?? false }, reason: .expired, into: &actions)
        }
        if !delayed.isEmpty && !_isShuttingDown {
            var due: [Entry] = []
            delayed.removeAll { entry in
                guard (entry.ticket?.notBefore ?? now) <= now else { return false }
                due.append(entry)
                return true
            }
            for entry in due.reversed() { prependQueued(entry) }
        }
        for i in slots.indices {
            if let at = slots[i].restartAt, at <= now, slots[i].phase == .dead {
                slots[i].restartAt = nil
                if !_isShuttingDown { replace(slot: i, into: &actions) }
            }
            guard slots[i].phase == .ready, let head = slots[i].inFlight.first,
                  let ticket = head.ticket, let limit = ticket.timeLimit else { continue }
            guard let started = ticket.startedAt else {
                ticket.startedAt = now
                continue
            }
            if let raised = ticket.interruptedAt {
                if now - raised >= timeLimitGrace {
                    killAndReplace(slot: i, reporting: { $0.seq == head.seq }, reason: .timedOut(limit: limit),
                                   into: &actions)
                }
            } else if now - started >= limit {
                ticket.interruptedAt = now
                actions.append(.interrupt(slots[i].id, seq: head.seq))
                if timeLimitGrace == .zero {
                    killAndReplace(slot: i, reporting: { $0.seq == head.seq }, reason: .timedOut(limit: limit),
                                   into: &actions)
                }
            }
        }
        fill(now: now, into: &actions)
        return actions
    }

    /// Starts a graceful shutdown: nothing more is accepted, queued tasks are reported as
    /// shut down, idle and starting workers retire, busy workers retire after their tasks.
    public mutating func beginShutdown() -> [Action] {
        guard !_isShuttingDown else { return [] }
        var actions: [Action] = []
        removeQueued(where: { _ in true }, reason: .shutDown, into: &actions)
        removeDelayed(where: { _ in true }, reason: .shutDown, into: &actions)
        _isShuttingDown = true
        for i in slots.indices {
            slots[i].restartAt = nil
            guard slots[i].phase != .dead && slots[i].inFlight.isEmpty && slots[i].deciding == 0 else { continue }
            slots[i].phase = .dead
            _counters.workersRetired += 1
            actions.append(.retire(slots[i].id))
        }
        return actions
    }

    /// Ends a shutdown: workers still busy are killed and their tasks reported shut down.
    public mutating func forceShutdown() -> [Action] {
        var actions = beginShutdown()
        for i in slots.indices where slots[i].phase != .dead {
            while let entry = slots[i].inFlight.popFirst() {
                _counters.shutDown += 1
                actions.append(.report(entry.task, .shutDown, entry.ticket))
            }
            slots[i].phase = .dead
            slots[i].deciding = 0
            actions.append(.kill(slots[i].id))
        }
        return actions
    }

    // MARK: Internals

    @inlinable
    func index(of id: WorkerID) -> Int? {
        guard id.slot >= 0, id.slot < slots.count, slots[id.slot].id == id else { return nil }
        return id.slot
    }

    @inlinable
    mutating func lane(for priority: QueuePriority) -> Int {
        // Lanes are few and sorted highest first.
        for i in lanes.indices {
            if lanes[i].priority == priority { return i }
            if lanes[i].priority < priority {
                lanes.insert(Lane(priority: priority), at: i)
                return i
            }
        }
        lanes.append(Lane(priority: priority))
        return lanes.count - 1
    }

    @inlinable
    mutating func takeInFlight(slot i: Int, seq: UInt64) -> Entry? {
        if slots[i].inFlight.first?.seq == seq { return slots[i].inFlight.removeFirst() }
        guard let k = slots[i].inFlight.firstIndex(where: { $0.seq == seq }) else { return nil }
        return slots[i].inFlight.remove(at: k)
    }

    /// After a worker's answers were used: recycle it (`.end`, `maxTasksPerWorker`), retire it
    /// (shutting down and idle), or give it more work.
    @inlinable
    mutating func afterAnswers(slot i: Int, ending: Bool, now: MonotonicInstant, into actions: inout [Action]) {
        let id = slots[i].id
        let exhausted = maxTasksPerWorker.map { slots[i].served >= $0 } ?? false
        if ending || exhausted {
            let behind = !slots[i].inFlight.isEmpty
            requeueInFlight(slot: i, into: &actions)
            actions.append(behind ? .kill(id) : .retire(id))
            _counters.workersRetired += 1
            if _isShuttingDown { slots[i].phase = .dead } else { replace(slot: i, into: &actions) }
            fill(now: now, into: &actions)
            return
        }
        if _isShuttingDown && slots[i].inFlight.isEmpty && slots[i].deciding == 0 {
            slots[i].phase = .dead
            _counters.workersRetired += 1
            actions.append(.retire(id))
        }
        fill(now: now, preferring: i, into: &actions)
    }

    /// Updates a slot's time per task from the answers that just came in (for `prefetchTarget`).
    @inlinable
    mutating func measure(slot i: Int, answers: Int, now: MonotonicInstant) {
        guard answers > 0 else { return }
        let since = slots[i].busySince
        if since != .max && now.nanoseconds > since {
            let perTask = Double(now.nanoseconds - since) / Double(answers)
            let old = slots[i].nanosecondsPerTask
            slots[i].nanosecondsPerTask = old == 0 ? perTask : old * 0.75 + perTask * 0.25
        }
        slots[i].busySince = slots[i].inFlight.isEmpty ? .max : now.nanoseconds
    }

    /// How many tasks slot `i` may hold now: `prefetch`, or under `prefetchTarget` as many as
    /// it runs in that time (one until its first answers tell).
    @inlinable
    func depth(of i: Int) -> Int {
        guard prefetchTarget != nil else { return prefetch }
        guard slots[i].nanosecondsPerTask > 0 else { return 1 }
        let fit = prefetchTargetNanoseconds / slots[i].nanosecondsPerTask
        return fit >= Double(prefetch) ? prefetch : max(1, Int(fit))
    }

    /// Queues `entry` again if its ticket allows another attempt: at once, or after its
    /// backoff (then `tick` requeues it). Never while shutting down.
    @usableFromInline
    mutating func retry(_ entry: Entry, now: MonotonicInstant, into actions: inout [Action]) -> Bool {
        guard !_isShuttingDown, let ticket = entry.ticket, ticket.attempts <= ticket.retries else { return false }
        _counters.retried += 1
        let wait = ticket.backoff(beforeRetry: ticket.attempts)
        if wait <= .zero {
            prependQueued(entry)
        } else {
            ticket.notBefore = now + wait
            delayed.append(entry)
        }
        return true
    }

    /// Reports a task that answered after its time limit (its answer is discarded).
    @usableFromInline
    mutating func timedOut(_ entry: Entry, into actions: inout [Action]) {
        _counters.timedOut += 1
        let limit = entry.ticket?.timeLimit ?? .zero
        actions.append(.report(entry.task, .timedOut(limit: limit), entry.ticket))
    }

    /// Puts an entry back at the front of its lane.
    mutating func prependQueued(_ entry: Entry) {
        let l = lane(for: entry.priority)
        lanes[l].queue.prepend(entry)
        _queuedCount += 1
        if entry.deadline != nil { deadlineCount += 1 }
    }

    /// Puts a slot's held tasks back at the front of their lanes, in their original order
    /// (or reports them shut down when the queue is shutting down).
    @usableFromInline
    mutating func requeueInFlight(slot i: Int, into actions: inout [Action]) {
        if _isShuttingDown {
            while let entry = slots[i].inFlight.popFirst() {
                _counters.shutDown += 1
                actions.append(.report(entry.task, .shutDown, entry.ticket))
            }
            return
        }
        while let entry = slots[i].inFlight.popLast() {
            // It never ran to an answer on this worker: not an attempt.
            if let ticket = entry.ticket { ticket.attempts = max(0, ticket.attempts - 1) }
            prependQueued(entry)
            _counters.requeued += 1
        }
    }

    @usableFromInline
    mutating func replace(slot i: Int, into actions: inout [Action]) {
        let old = slots[i].id
        slots[i].id = WorkerID(slot: i, generation: old.generation &+ 1)
        slots[i].phase = .starting
        slots[i].status = .fresh
        slots[i].inFlight = []
        slots[i].served = 0
        slots[i].deciding = 0
        slots[i].restartAt = nil
        slots[i].busySince = .max
        _counters.workersStarted += 1
        actions.append(.start(slots[i].id))
    }

    /// The wait before a slot that failed to start `failures` times in a row starts again.
    func restartWait(afterFailures failures: Int) -> Duration {
        var wait = restartBackoff
        var n = maxStartFailures
        while n < failures && wait < restartBackoffLimit {
            wait = wait * 2
            n += 1
        }
        return min(wait, restartBackoffLimit)
    }

    private mutating func cancelMatching(_ hit: (Entry) -> Bool, now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        removeQueued(where: hit, reason: .cancelled, into: &actions)
        removeDelayed(where: hit, reason: .cancelled, into: &actions)
        for i in slots.indices where slots[i].phase == .ready && slots[i].inFlight.contains(where: hit) {
            if let head = slots[i].inFlight.first, hit(head) {
                killAndReplace(slot: i, reporting: hit, reason: .cancelled, into: &actions)
            } else {
                withdraw(slot: i, hit, into: &actions)
            }
        }
        fill(now: now, into: &actions)
        return actions
    }

    /// Takes cancelled tasks out of a worker that has not started them; it keeps the task it
    /// is running.
    private mutating func withdraw(slot i: Int, _ hit: (Entry) -> Bool, into actions: inout [Action]) {
        var keep: Deque<Entry> = []
        var seqs: [UInt64] = []
        for entry in slots[i].inFlight {
            if hit(entry) {
                seqs.append(entry.seq)
                _counters.cancelled += 1
                _counters.withdrawn += 1
                actions.append(.report(entry.task, .cancelled, entry.ticket))
            } else {
                keep.append(entry)
            }
        }
        slots[i].inFlight = keep
        actions.append(.withdraw(slots[i].id, seqs: seqs))
    }

    private mutating func killAndReplace(slot i: Int, reporting hit: (Entry) -> Bool,
                                         reason: TaskFailure, into actions: inout [Action]) {
        let id = slots[i].id
        var keep: Deque<Entry> = []
        for entry in slots[i].inFlight {
            if hit(entry) {
                count(reason)
                actions.append(.report(entry.task, reason, entry.ticket))
            } else {
                keep.append(entry)
            }
        }
        slots[i].inFlight = keep
        requeueInFlight(slot: i, into: &actions)
        slots[i].phase = .dead
        actions.append(.kill(id))
        if !_isShuttingDown { replace(slot: i, into: &actions) }
    }

    private mutating func count(_ reason: TaskFailure) {
        switch reason {
        case .cancelled: _counters.cancelled += 1
        case .expired: _counters.expired += 1
        case .shutDown: _counters.shutDown += 1
        case .workerDied, .noWorker: _counters.lostWithWorker += 1
        case .timedOut: _counters.timedOut += 1
        case .failed: _counters.failed += 1
        case .marshalFailed: _counters.marshalFailures += 1
        }
    }

    private mutating func removeQueued(where hit: (Entry) -> Bool, reason: TaskFailure,
                                       into actions: inout [Action]) {
        for l in lanes.indices where !lanes[l].queue.isEmpty {
            guard lanes[l].queue.contains(where: hit) else { continue }
            var keep: Deque<Entry> = []
            keep.reserveCapacity(lanes[l].queue.count)
            for entry in lanes[l].queue {
                if hit(entry) {
                    _queuedCount -= 1
                    if entry.deadline != nil { deadlineCount -= 1 }
                    count(reason)
                    actions.append(.report(entry.task, reason, entry.ticket))
                } else {
                    keep.append(entry)
                }
            }
            lanes[l].queue = keep
        }
    }

    private mutating func removeDelayed(where hit: (Entry) -> Bool, reason: TaskFailure,
                                        into actions: inout [Action]) {
        guard !delayed.isEmpty else { return }
        var keep: [Entry] = []
        for entry in delayed {
            if hit(entry) {
                count(reason)
                actions.append(.report(entry.task, reason, entry.ticket))
            } else {
                keep.append(entry)
            }
        }
        delayed = keep
    }

    private mutating func failEverythingIfNoWorkerLeft(cause: String, into actions: inout [Action]) {
        guard slots.allSatisfy({ $0.phase == .dead }) else { return }
        _noWorkerCause = cause
        removeQueued(where: { _ in true }, reason: .noWorker(cause: cause), into: &actions)
        removeDelayed(where: { _ in true }, reason: .noWorker(cause: cause), into: &actions)
    }

    /// Hands queued tasks to ready workers that have room, starting with `preferred` (the
    /// worker that just answered: it is awake) or else rotating the starting slot.
    @inlinable
    mutating func fill(now: MonotonicInstant, preferring preferred: Int? = nil, into actions: inout [Action]) {
        guard _queuedCount > 0, !_isShuttingDown else { return }
        let n = slots.count
        guard n > 0 else { return }
        let start = preferred ?? rotation
        if preferred == nil { rotation = (rotation + 1) % n }
        var hungry = 0
        for i in slots.indices where slots[i].phase == .ready && slots[i].deciding == 0
            && slots[i].inFlight.count <= depth(of: i) / 2 {
            hungry += 1
        }
        guard hungry > 0 else { return }
        for k in 0..<n {
            guard _queuedCount > 0 else { return }
            let i = (start + k) % n
            let depth = depth(of: i)
            guard slots[i].phase == .ready, slots[i].deciding == 0, slots[i].inFlight.count <= depth / 2 else { continue }
            let share = max(1, (_queuedCount + hungry - 1) / hungry)
            var want = min(depth - slots[i].inFlight.count, share)
            if let most = maxTasksPerWorker { want = min(want, most - slots[i].served - slots[i].inFlight.count) }
            hungry -= 1
            guard want > 0 else { continue }
            if slots[i].inFlight.isEmpty && prefetchTarget != nil { slots[i].busySince = now.nanoseconds }
            var batch: [Assignment<Kind>] = []
            batch.reserveCapacity(want)
            while batch.count < want, let entry = takeMatching(status: slots[i].status) {
                if let deadline = entry.deadline, deadline <= now {
                    _counters.expired += 1
                    actions.append(.report(entry.task, .expired, entry.ticket))
                    continue
                }
                guard let request = kind.request(for: entry.task, status: slots[i].status) else {
                    _counters.expired += 1
                    actions.append(.report(entry.task, .expired, entry.ticket))
                    continue
                }
                if let ticket = entry.ticket {
                    ticket.attempts += 1
                    ticket.interruptedAt = nil
                    ticket.startedAt = ticket.timeLimit != nil && slots[i].inFlight.isEmpty ? now : nil
                }
                slots[i].inFlight.append(entry)
                batch.append(Assignment(seq: entry.seq, task: entry.task, request: request, cancel: entry.cancel))
            }
            if !batch.isEmpty { actions.append(.dispatch(slots[i].id, batch)) }
        }
    }

    /// Removes and returns the first queued task (highest priority, then FIFO) that a worker
    /// with `status` matches.
    @inlinable
    mutating func takeMatching(status: WorkerStatus<Kind.Competence>) -> Entry? {
        for l in lanes.indices where !lanes[l].queue.isEmpty {
            if let first = lanes[l].queue.first, kind.matches(first.task, status: status) {
                return took(lanes[l].queue.removeFirst())
            }
            if let k = lanes[l].queue.firstIndex(where: { kind.matches($0.task, status: status) }) {
                return took(lanes[l].queue.remove(at: k))
            }
        }
        return nil
    }

    @inlinable
    mutating func took(_ entry: Entry) -> Entry {
        _queuedCount -= 1
        if entry.deadline != nil { deadlineCount -= 1 }
        return entry
    }
}
