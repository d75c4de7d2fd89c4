import DequeModule
import SpindleKernel

/// The queue's scheduling logic as a value-type state machine: events in, actions out, no I/O.
///
/// ``TaskQueue`` wraps it in a lock and carries out its actions through a ``WorkerBackend``;
/// tests drive it directly on a `ManualClock` with no threads.
///
/// ```
///  enqueue ─┐                      ┌─▶ start(worker)         spawn a worker
///  ready ───┤                      ├─▶ dispatch(worker, […]) hand over assignments
///  completed┼─▶  TaskScheduler  ───┼─▶ kill(worker)          cancelled / .end with work behind
///  died ────┤   lanes · slots      ├─▶ retire(worker)        .end, or shutdown: exit cleanly
///  cancel ──┤                      ├─▶ report(task?, why)    the kind's failure hook
///  tick(now)┘                      └─▶ marshalFailed(task, e)
/// ```
///
/// Prefetch: with `prefetch > 1` a worker holds up to that many assignments; each is matched
/// against the worker's status when dispatched. If a response ends the worker, the
/// assignments behind it are requeued at the front of their priority (a thread worker may
/// already have performed them; that result is discarded and the task runs again).
///
/// Performance: the per-task paths (`enqueue`, `completed`, `fill` and what they call) are
/// `@inlinable`, so a client's `TaskScheduler<MyKind>` is specialised in the client's module
/// rather than run generically (see docs/taskqueue.md, "Performance"). Rare events
/// (cancellation, deaths, shutdown, snapshots) are not.
public struct TaskScheduler<Kind: TaskKind> {
    /// A task waiting in a lane or held by a worker.
    @usableFromInline
    struct Entry {
        @usableFromInline var seq: UInt64
        @usableFromInline var task: Kind.Task
        @usableFromInline var priority: QueuePriority
        @usableFromInline var cancel: CancelSwitch
        @usableFromInline var deadline: MonotonicInstant?

        @inlinable
        init(seq: UInt64, task: Kind.Task, priority: QueuePriority, cancel: CancelSwitch,
             deadline: MonotonicInstant?) {
            self.seq = seq
            self.task = task
            self.priority = priority
            self.cancel = cancel
            self.deadline = deadline
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
        @usableFromInline var completed = 0
        @usableFromInline var startFailures = 0

        init(id: WorkerID) { self.id = id }
    }

    /// What the shell must do.
    public enum Action: Sendable {
        case start(WorkerID)
        case dispatch(WorkerID, [Assignment<Kind>])
        case kill(WorkerID)
        case retire(WorkerID)
        case report(Kind.Task?, TaskFailure)
        case marshalFailed(Kind.Task, MarshalError)
    }

    public let kind: Kind
    /// Most tasks a worker holds at once (1 = the reference's one task at a time).
    public let prefetch: Int
    /// Most tasks queued by `enqueue`; injected tasks are never refused.
    public let limit: Int
    /// Consecutive failed starts after which a slot stays dead.
    public let maxStartFailures: Int

    @usableFromInline var lanes: [Lane] = []
    @usableFromInline var slots: [Slot]
    @usableFromInline var nextSeq: UInt64 = 1
    @usableFromInline var rotation = 0
    @usableFromInline var deadlineCount = 0
    // Storage behind the read-only public properties below: inlinable code cannot use a
    // `private(set)` setter, and `@usableFromInline` cannot be put on one.
    @usableFromInline var _queuedCount = 0
    @usableFromInline var _counters = TaskQueueSnapshot.Counters()
    @usableFromInline var _isShuttingDown = false

    /// Tasks waiting in the lanes (not held by a worker).
    @inlinable public var queuedCount: Int { _queuedCount }
    /// Totals since the scheduler was created.
    @inlinable public var counters: TaskQueueSnapshot.Counters { _counters }
    /// Whether ``beginShutdown()`` was called: nothing more is accepted.
    @inlinable public var isShuttingDown: Bool { _isShuttingDown }

    /// Creates a scheduler with `workers` slots; call ``startWorkers()`` for the first
    /// `start` actions.
    public init(kind: Kind, workers: Int, prefetch: Int = 1, limit: Int = .max, maxStartFailures: Int = 3) {
        self.kind = kind
        self.prefetch = max(1, prefetch)
        self.limit = max(1, limit)
        self.maxStartFailures = max(1, maxStartFailures)
        slots = (0..<max(0, workers)).map { Slot(id: WorkerID(slot: $0, generation: 0)) }
    }

    // MARK: Queries

    /// Queue empty and no worker holding a task.
    @inlinable
    public var isDrained: Bool {
        _queuedCount == 0 && !slots.contains { !$0.inFlight.isEmpty }
    }

    /// How many more tasks `enqueue` accepts now.
    @inlinable
    public var freeSpace: Int { _isShuttingDown ? 0 : max(0, limit - _queuedCount) }

    /// Whether every worker has gone (after shutdown, or when none could start).
    @inlinable
    public var allWorkersDead: Bool { slots.allSatisfy { $0.phase == .dead } }

    /// The live worker ids.
    public var liveWorkers: [WorkerID] { slots.filter { $0.phase != .dead }.map(\.id) }

    /// The current worker of each slot.
    public var workerIDs: [WorkerID] { slots.map(\.id) }

    /// Whether worker `id` is live and holds at least one task.
    @inlinable
    public func holdsWork(_ id: WorkerID) -> Bool {
        guard let i = index(of: id) else { return false }
        return slots[i].phase == .ready && !slots[i].inFlight.isEmpty
    }

    /// The sequence numbers worker `id` holds, in dispatch order.
    public func inFlightSeqs(of id: WorkerID) -> [UInt64] {
        guard let i = index(of: id) else { return [] }
        return slots[i].inFlight.map(\.seq)
    }

    /// Whether any queued task has a deadline (the shell ticks only then).
    @inlinable
    public var hasDeadlines: Bool { deadlineCount > 0 }

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
        return TaskQueueSnapshot(queued: _queuedCount, queuedByPriority: byPriority,
                                 workers: workers, counters: _counters)
    }

    // MARK: Events

    /// The first `start` action for every slot.
    public mutating func startWorkers() -> [Action] {
        _counters.workersStarted += slots.count
        return slots.map { .start($0.id) }
    }

    /// Queues tasks (as many as fit under the limit unless `force`), then dispatches.
    /// - Returns: how many of `tasks` were accepted (a prefix), and the actions.
    @inlinable
    public mutating func enqueue(_ tasks: some Collection<Kind.Task>, priority: QueuePriority,
                                 cancel: CancelSwitch, deadline: MonotonicInstant?,
                                 now: MonotonicInstant, force: Bool = false) -> (accepted: Int, actions: [Action]) {
        guard !_isShuttingDown else { return (0, []) }
        let room = force ? tasks.count : min(tasks.count, freeSpace)
        guard room > 0 else { return (0, []) }
        let laneIndex = lane(for: priority)
        lanes[laneIndex].queue.reserveCapacity(lanes[laneIndex].queue.count + room)
        for task in tasks.prefix(room) {
            lanes[laneIndex].queue.append(Entry(seq: nextSeq, task: task, priority: priority,
                                                cancel: cancel, deadline: deadline))
            nextSeq &+= 1
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

    /// A worker answered assignments, in the order they were dispatched.
    @inlinable
    public mutating func completed(_ id: WorkerID, _ completions: some Sequence<Completion<Kind>>,
                                   now: MonotonicInstant) -> [Action] {
        guard let i = index(of: id), slots[i].phase == .ready else { return [] }
        var actions: [Action] = []
        // Set when a response ends the worker. Answers after it in the same batch were
        // already computed: they are still used (and their injected tasks queued) rather than
        // discarded and run again; only what is still unanswered is requeued.
        var ending = false
        for completion in completions {
            guard let entry = takeInFlight(slot: i, seq: completion.seq) else { continue }
            slots[i].completed += 1
            _counters.completed += 1
            switch completion.outcome {
            case .marshalFailed(let error):
                _counters.marshalFailures += 1
                actions.append(.marshalFailed(entry.task, error))
            case .response(let response):
                switch kind.use(response, for: entry.task, status: slots[i].status) {
                case .stay(let competence, let inject):
                    if !ending { slots[i].status = .old(competence) }
                    if !inject.isEmpty && !_isShuttingDown {
                        let laneIndex = lane(for: entry.priority)
                        for task in inject {
                            lanes[laneIndex].queue.append(Entry(seq: nextSeq, task: task,
                                priority: entry.priority, cancel: entry.cancel, deadline: nil))
                            nextSeq &+= 1
                        }
                        _queuedCount += inject.count
                        _counters.enqueued += inject.count
                    } else if !inject.isEmpty {
                        _counters.shutDown += inject.count
                        for task in inject { actions.append(.report(task, .shutDown)) }
                    }
                case .end:
                    ending = true
                }
            }
        }
        if ending {
            let behind = !slots[i].inFlight.isEmpty
            requeueInFlight(slot: i, into: &actions)
            actions.append(behind ? .kill(id) : .retire(id))
            _counters.workersRetired += 1
            if _isShuttingDown { slots[i].phase = .dead } else { replace(slot: i, into: &actions) }
            fill(now: now, into: &actions)
            return actions
        }
        if _isShuttingDown && slots[i].inFlight.isEmpty {
            slots[i].phase = .dead
            _counters.workersRetired += 1
            actions.append(.retire(id))
        }
        fill(now: now, preferring: i, into: &actions)
        return actions
    }

    /// A worker died (crash, kill -9, closed pipe, could not start). Its running task is
    /// reported; tasks prefetched behind it are requeued; a replacement is started.
    public mutating func workerDied(_ id: WorkerID, detail: String, now: MonotonicInstant) -> [Action] {
        guard let i = index(of: id), slots[i].phase != .dead else { return [] }
        var actions: [Action] = []
        let wasStarting = slots[i].phase == .starting
        _counters.workerDeaths += 1
        if let running = slots[i].inFlight.popFirst() {
            _counters.lostWithWorker += 1
            actions.append(.report(running.task, .workerDied(worker: id, detail: detail)))
        } else if !_isShuttingDown {
            actions.append(.report(nil, .workerDied(worker: id, detail: detail)))
        }
        requeueInFlight(slot: i, into: &actions)
        let failures = wasStarting ? slots[i].startFailures + 1 : 0
        slots[i].phase = .dead
        if !_isShuttingDown {
            if failures < maxStartFailures {
                replace(slot: i, into: &actions)
                slots[i].startFailures = failures
            } else {
                slots[i].startFailures = failures
                failEverythingIfNoWorkerLeft(detail: detail, into: &actions)
            }
        }
        fill(now: now, into: &actions)
        return actions
    }

    /// Cancels every task under `cancel`: queued ones are removed, running ones have their
    /// worker killed and replaced. Each is reported once as cancelled.
    public mutating func cancel(_ cancel: CancelSwitch, now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        removeQueued(where: { $0.cancel == cancel }, reason: .cancelled, into: &actions)
        for i in slots.indices where slots[i].phase == .ready
            && slots[i].inFlight.contains(where: { $0.cancel == cancel }) {
            killAndReplace(slot: i, reporting: { $0.cancel == cancel }, reason: .cancelled, into: &actions)
        }
        fill(now: now, into: &actions)
        return actions
    }

    /// Cancels everything queued and running.
    public mutating func cancelAll(now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        removeQueued(where: { _ in true }, reason: .cancelled, into: &actions)
        for i in slots.indices where slots[i].phase == .ready && !slots[i].inFlight.isEmpty {
            killAndReplace(slot: i, reporting: { _ in true }, reason: .cancelled, into: &actions)
        }
        return actions
    }

    /// Expires queued tasks whose deadline is at or before `now`.
    public mutating func tick(now: MonotonicInstant) -> [Action] {
        guard deadlineCount > 0 else { return [] }
        var actions: [Action] = []
        removeQueued(where: { $0.deadline.map { $0 <= now } ?? false }, reason: .expired, into: &actions)
        return actions
    }

    /// Starts a graceful shutdown: nothing more is accepted, queued tasks are reported as
    /// shut down, idle and starting workers retire, busy workers retire after their tasks.
    public mutating func beginShutdown() -> [Action] {
        guard !_isShuttingDown else { return [] }
        var actions: [Action] = []
        removeQueued(where: { _ in true }, reason: .shutDown, into: &actions)
        _isShuttingDown = true
        for i in slots.indices where slots[i].phase != .dead && slots[i].inFlight.isEmpty {
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
                actions.append(.report(entry.task, .shutDown))
            }
            slots[i].phase = .dead
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

    /// Puts a slot's held tasks back at the front of their lanes, in their original order
    /// (or reports them shut down when the queue is shutting down).
    @usableFromInline
    mutating func requeueInFlight(slot i: Int, into actions: inout [Action]) {
        if _isShuttingDown {
            while let entry = slots[i].inFlight.popFirst() {
                _counters.shutDown += 1
                actions.append(.report(entry.task, .shutDown))
            }
            return
        }
        while let entry = slots[i].inFlight.popLast() {
            let l = lane(for: entry.priority)
            lanes[l].queue.prepend(entry)
            _queuedCount += 1
            if entry.deadline != nil { deadlineCount += 1 }
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
        _counters.workersStarted += 1
        actions.append(.start(slots[i].id))
    }

    private mutating func killAndReplace(slot i: Int, reporting hit: (Entry) -> Bool,
                                         reason: TaskFailure, into actions: inout [Action]) {
        let id = slots[i].id
        var keep: Deque<Entry> = []
        for entry in slots[i].inFlight {
            if hit(entry) {
                if reason == .cancelled { _counters.cancelled += 1 }
                actions.append(.report(entry.task, reason))
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
                    switch reason {
                    case .cancelled: _counters.cancelled += 1
                    case .expired: _counters.expired += 1
                    case .shutDown: _counters.shutDown += 1
                    case .workerDied: _counters.lostWithWorker += 1
                    }
                    actions.append(.report(entry.task, reason))
                } else {
                    keep.append(entry)
                }
            }
            lanes[l].queue = keep
        }
    }

    private mutating func failEverythingIfNoWorkerLeft(detail: String, into actions: inout [Action]) {
        guard slots.allSatisfy({ $0.phase == .dead }) else { return }
        let last = slots.last?.id ?? WorkerID(slot: 0, generation: 0)
        removeQueued(where: { _ in true },
                     reason: .workerDied(worker: last, detail: "no worker could be started: \(detail)"),
                     into: &actions)
    }

    /// Hands queued tasks to ready workers that have room, starting with `preferred` (the
    /// worker that just answered: it is awake) or else rotating the starting slot.
    @inlinable
    mutating func fill(now: MonotonicInstant, preferring preferred: Int? = nil, into actions: inout [Action]) {
        guard _queuedCount > 0, !_isShuttingDown else { return }
        let n = slots.count
        guard n > 0 else { return }
        let refillAt = prefetch / 2
        let start = preferred ?? rotation
        if preferred == nil { rotation = (rotation + 1) % n }
        var hungry = 0
        for slot in slots where slot.phase == .ready && slot.inFlight.count <= refillAt { hungry += 1 }
        guard hungry > 0 else { return }
        for k in 0..<n {
            guard _queuedCount > 0 else { return }
            let i = (start + k) % n
            guard slots[i].phase == .ready, slots[i].inFlight.count <= refillAt else { continue }
            let share = max(1, (_queuedCount + hungry - 1) / hungry)
            let want = min(prefetch - slots[i].inFlight.count, share)
            hungry -= 1
            var batch: [Assignment<Kind>] = []
            batch.reserveCapacity(want)
            while batch.count < want, let entry = takeMatching(status: slots[i].status) {
                if let deadline = entry.deadline, deadline <= now {
                    _counters.expired += 1
                    actions.append(.report(entry.task, .expired))
                    continue
                }
                guard let request = kind.request(for: entry.task, status: slots[i].status) else {
                    _counters.expired += 1
                    actions.append(.report(entry.task, .expired))
                    continue
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
