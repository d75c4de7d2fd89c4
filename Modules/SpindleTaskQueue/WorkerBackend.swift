/// Where workers live: threads in this process, child processes, …
///
/// A ``TaskQueue`` calls these methods while holding its scheduler lock, so they must
/// return quickly and must never call back into ``WorkerEvents`` synchronously: report
/// from the worker's own thread or the backend's event loop instead. Unknown or stale
/// worker ids (a worker already killed) are ignored.
public protocol WorkerBackend<Kind>: Sendable {
    associatedtype Kind: TaskKind

    /// Called once, before any other method, with the queue's kind and its event sink.
    func attach(kind: Kind, events: WorkerEvents<Kind>) async throws(TaskQueueError)

    /// Starts a worker; report ``WorkerEvents/ready(_:)`` when it can take tasks, or
    /// ``WorkerEvents/died(_:detail:)`` when it could not start.
    func start(_ id: WorkerID)

    /// Hands assignments to a ready worker; answer each with a ``Completion`` in order.
    func dispatch(_ id: WorkerID, _ batch: [Assignment<Kind>])

    /// Stops a worker now (cancelled task, or `.end` with tasks behind it). Its pending
    /// answers are discarded; do not report its death.
    func kill(_ id: WorkerID)

    /// Lets an idle worker exit cleanly (`.end`, shutdown). Do not report its death.
    func retire(_ id: WorkerID)

    /// Delivers master feedback to these workers, between their tasks.
    /// - Throws: the feedback could not be encoded (then no worker gets it).
    func broadcast(_ feedback: Kind.Feedback, to workers: [WorkerID]) throws(MarshalError)

    /// Raises the cancel flag of task `seq` on a worker (it ran past its time limit), so a
    /// cooperative `perform` can stop. Default: nothing (the queue kills the worker after its
    /// `timeLimitGrace`).
    func interrupt(_ id: WorkerID, seq: UInt64)

    /// Takes back prefetched assignments the worker has not started (they were cancelled).
    /// Answers for them that arrive anyway are ignored by the queue. Default: nothing (the
    /// worker runs them and the queue discards their answers).
    func withdraw(_ id: WorkerID, seqs: [UInt64])

    /// Returns when no thread or process of this backend remains.
    func shutdown() async
}

extension WorkerBackend {
    public func interrupt(_ id: WorkerID, seq: UInt64) {}
    public func withdraw(_ id: WorkerID, seqs: [UInt64]) {}
}

/// How a backend tells its queue what its workers did. Callable from any thread, never from
/// inside a ``WorkerBackend`` method.
public struct WorkerEvents<Kind: TaskKind>: Sendable {
    @usableFromInline let onReady: @Sendable (WorkerID) -> Void
    @usableFromInline let onCompleted: @Sendable (WorkerID, [Completion<Kind>]) -> Void
    @usableFromInline let onDied: @Sendable (WorkerID, String) -> Void
    @usableFromInline let onFeedback: @Sendable (WorkerID, Kind.Task, Kind.Feedback) -> Void
    @usableFromInline let onFeedbackFailed: @Sendable (Kind.Task, MarshalError) -> Void
    @usableFromInline let onBroadcastFailed: @Sendable (WorkerID, MarshalError) -> Void

    /// Builds a sink from closures (``TaskQueue`` makes the real one; tests may make others).
    @inlinable
    public init(ready: @escaping @Sendable (WorkerID) -> Void,
                completed: @escaping @Sendable (WorkerID, [Completion<Kind>]) -> Void,
                died: @escaping @Sendable (WorkerID, String) -> Void,
                feedback: @escaping @Sendable (WorkerID, Kind.Task, Kind.Feedback) -> Void,
                feedbackFailed: @escaping @Sendable (Kind.Task, MarshalError) -> Void,
                broadcastFailed: @escaping @Sendable (WorkerID, MarshalError) -> Void = { _, _ in }) {
        onReady = ready
        onCompleted = completed
        onDied = died
        onFeedback = feedback
        onFeedbackFailed = feedbackFailed
        onBroadcastFailed = broadcastFailed
    }

    /// The worker started and takes tasks.
    @inlinable public func ready(_ id: WorkerID) { onReady(id) }
    /// The worker answered these assignments (in dispatch order).
    @inlinable public func completed(_ id: WorkerID, _ completions: [Completion<Kind>]) { onCompleted(id, completions) }
    /// The worker died or could not start; `detail` says how (exit status, signal, error).
    @inlinable public func died(_ id: WorkerID, detail: String) { onDied(id, detail) }
    /// The worker emitted feedback while running `task`. Report it before the task's completion.
    @inlinable public func feedback(_ id: WorkerID, task: Kind.Task, _ feedback: Kind.Feedback) { onFeedback(id, task, feedback) }
    /// Feedback from a worker could not be decoded.
    @inlinable public func feedbackFailed(task: Kind.Task, _ error: MarshalError) { onFeedbackFailed(task, error) }
    /// The worker could not decode a broadcast.
    @inlinable public func broadcastFailed(_ id: WorkerID, _ error: MarshalError) { onBroadcastFailed(id, error) }
}
