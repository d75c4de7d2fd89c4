import DequeModule
import Synchronization

extension TaskQueue {
    /// Runs every task and returns their outcomes in input order: the value each produced, or
    /// the ``TaskFailure`` that ended it. Like Python's `ProcessPoolExecutor.map`, but one
    /// failed task fails only its own entry.
    ///
    /// ```swift
    /// let squares = try await queue.map(1...100)     // [Result<Int, TaskFailure>]
    /// ```
    ///
    /// The tasks share one cancel switch: cancelling the calling Swift task cancels those not
    /// finished yet (they come back `.cancelled`).
    /// - Throws: only when the tasks could not be queued: ``TaskQueueError/shutDown(kind:)``,
    ///   ``TaskQueueError/noWorkerCanStart(cause:)``, ``TaskQueueError/cancelledWhileWaiting(accepted:)``
    ///   (then the accepted ones are cancelled), bad options.
    @inlinable
    public func map(_ tasks: some Sequence<Kind.Task>, priority: QueuePriority = .normal,
                    options: TaskOptions = TaskOptions()) async throws(TaskQueueError) -> [Result<Kind.Output, TaskFailure>] {
        try options.validate()
        let tasks = Array(tasks)
        if tasks.isEmpty { return [] }
        var tickets: [TaskTicket] = []
        tickets.reserveCapacity(tasks.count)
        for _ in tasks.indices { tickets.append(TaskTicket(options: options)) }
        let group = CancelSwitch()
        do {
            try await submit(tasks[...], tickets: tickets[...], priority: priority, cancel: group, deadline: nil,
                             options: options)
        } catch {
            cancel(group)
            throw error
        }
        return await withTaskCancellationHandler {
            var results: [Result<Kind.Output, TaskFailure>] = []
            results.reserveCapacity(tickets.count)
            for ticket in tickets {
                results.append(TaskHandle<Kind.Output>.cast(await ticket.outcome()))
            }
            return results
        } onCancel: {
            self.cancel(group)
        }
    }

    /// Runs every task and yields `(input, result)` pairs as the tasks finish (not in input
    /// order). The tasks are queued when iteration starts; every input comes back exactly
    /// once. Ending the loop early (`break`, a throw, cancellation) cancels the tasks not
    /// finished yet.
    ///
    /// ```swift
    /// for try await (input, result) in queue.results(of: inputs) {
    ///     print(input, result)
    /// }
    /// ```
    /// - Throws (from the iteration): only when the tasks could not be queued, as ``map(_:priority:options:)``.
    public func results(of tasks: some Sequence<Kind.Task>, priority: QueuePriority = .normal,
                        options: TaskOptions = TaskOptions()) -> TaskResults<Kind> {
        TaskResults(queue: self, tasks: Array(tasks), priority: priority, options: options)
    }
}

/// The outcomes of a batch of tasks as they finish: `for try await (input, result) in …`.
/// Made by ``TaskQueue/results(of:priority:options:)``.
public struct TaskResults<Kind: TaskKind>: AsyncSequence, Sendable {
    public typealias Element = (input: Kind.Task, result: Result<Kind.Output, TaskFailure>)
    public typealias Failure = TaskQueueError

    let queue: TaskQueue<Kind>
    let tasks: [Kind.Task]
    let priority: QueuePriority
    let options: TaskOptions

    public func makeAsyncIterator() -> Iterator {
        Iterator(channel: ResultChannel(queue: queue, tasks: tasks, priority: priority, options: options))
    }

    /// Yields each task's outcome once it has one.
    public struct Iterator: AsyncIteratorProtocol {
        public typealias Element = TaskResults.Element
        public typealias Failure = TaskQueueError

        let channel: ResultChannel<Kind>

        public mutating func next() async throws(TaskQueueError) -> Element? {
            try await channel.next()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(TaskQueueError) -> Element? {
            try await channel.next()
        }
    }
}

/// The shared state behind a ``TaskResults`` iterator: the batch's tickets, finished outcomes
/// in the order they arrived, and the iterator waiting for the next one. Dropped with its
/// iterator: tasks still unfinished then are cancelled.
final class ResultChannel<Kind: TaskKind>: Sendable {
    private struct State {
        var started = false
        var ready: Deque<(Int, Result<any Sendable, TaskFailure>)> = []
        var waiter: CheckedContinuation<Void, Never>?
        var delivered = 0
    }

    private let queue: TaskQueue<Kind>
    private let tasks: [Kind.Task]
    private let priority: QueuePriority
    private let options: TaskOptions
    private let group = CancelSwitch()
    private let state = Mutex(State())

    init(queue: TaskQueue<Kind>, tasks: [Kind.Task], priority: QueuePriority, options: TaskOptions) {
        self.queue = queue
        self.tasks = tasks
        self.priority = priority
        self.options = options
    }

    deinit {
        let unfinished = state.withLock { $0.started && $0.delivered < tasks.count }
        if unfinished { queue.cancel(group) }
    }

    func next() async throws(TaskQueueError) -> (input: Kind.Task, result: Result<Kind.Output, TaskFailure>)? {
        if !state.withLock({ s in defer { s.started = true }; return s.started }) {
            try await start()
        }
        while true {
            let (item, done) = state.withLock { s -> ((Int, Result<any Sendable, TaskFailure>)?, Bool) in
                if let first = s.ready.popFirst() {
                    s.delivered += 1
                    return (first, false)
                }
                return (nil, s.delivered == tasks.count)
            }
            if let (index, outcome) = item {
                return (tasks[index], TaskHandle<Kind.Output>.cast(outcome))
            }
            if done { return nil }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if !s.ready.isEmpty { return true }
                    s.waiter = c
                    return false
                }
                if now { c.resume() }
            }
        }
    }

    private func start() async throws(TaskQueueError) {
        try options.validate()
        var tickets: [TaskTicket] = []
        tickets.reserveCapacity(tasks.count)
        for index in tasks.indices {
            tickets.append(TaskTicket(options: options) { [weak self] outcome in self?.arrived(index, outcome) })
        }
        do {
            try await queue.submit(tasks[...], tickets: tickets[...], priority: priority, cancel: group,
                                   deadline: nil, options: options)
        } catch {
            queue.cancel(group)
            state.withLock { $0.delivered = tasks.count }  // the iteration ends with this error
            throw error
        }
    }

    private func arrived(_ index: Int, _ outcome: Result<any Sendable, TaskFailure>) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.ready.append((index, outcome))
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }
}
