import SpindleKernel

/// What a worker knows when it is offered a task: nothing yet, or what earlier tasks left.
///
/// A worker is born `fresh`. When it answers a task the kind decides, in
/// ``TaskKind/use(_:for:status:)``, whether it stays (as `old` with a competence) or ends and
/// is replaced by a fresh one. This gives both one-shot and persistent workers.
public enum WorkerStatus<Competence: Sendable>: Sendable {
    case fresh
    case old(Competence)
}

/// What the master does with a worker after using its response.
public enum ResponseDecision<Task: Sendable, Competence: Sendable>: Sendable {
    /// Keep the worker with this competence and enqueue `inject` under the parent's cancel
    /// switch and priority, ahead of nothing (FIFO after what is already queued).
    case stay(Competence, inject: [Task])
    /// Retire the worker; a fresh one replaces it so the pool keeps its size.
    case end
}

/// Why a task did not produce a response: the argument of the single failure hook.
public enum TaskFailure: Sendable, Equatable, CustomStringConvertible {
    /// The task was cancelled through its cancel switch (queued: removed; running: its worker
    /// was killed or abandoned).
    case cancelled
    /// The task's deadline passed before it started, or `request(for:status:)` returned nil.
    case expired
    /// The worker running the task died: crash, `kill -9`, closed pipe. `detail` says how.
    case workerDied(worker: WorkerID, detail: String)
    /// The queue shut down before the task ran.
    case shutDown

    public var description: String {
        switch self {
        case .cancelled: "cancelled"
        case .expired: "expired"
        case .workerDied(let w, let detail): "worker \(w) died: \(detail)"
        case .shutDown: "queue shut down"
        }
    }
}

/// Feedback type for kinds that exchange none.
public struct NoFeedback: Codable, Sendable, Equatable {
    public init() {}
}

/// A kind of work: the reference's `TaskKind` signature as a Swift protocol.
///
/// Master-side hooks are instance methods (the queue holds one `Kind` value, so hooks can
/// reach application state); worker-side code is static, because a worker process has no
/// master value, only the type it registered.
///
/// Hooks run on the queue's threads (a worker thread or the process backend's loop). They
/// must be quick and must not wait for the queue; `use(_:for:status:)` runs while the
/// scheduler is locked, so it decides, it does not work.
///
/// ```
///  master                                   worker
///  ──────                                   ──────
///  matches(task, status)?  ──┐
///  request(for: task) ───────┼── Request ──▶ perform(request, context)
///                            │                 │ context.emit(feedback) ──▶ forward(feedback…)
///  use(response, for: task) ◀┴── Response ─────┘
///     .stay(competence, inject:) | .end
/// ```
public protocol TaskKind: Sendable {
    /// The master's description of a unit of work (never leaves the master process).
    associatedtype Task: Sendable
    /// What a worker keeps between tasks when it stays.
    associatedtype Competence: Sendable
    /// What is sent to a worker.
    associatedtype Request: Codable & Sendable
    /// What a worker answers.
    associatedtype Response: Codable & Sendable
    /// Feedback: emitted by a worker during a task, or broadcast by the master to workers.
    associatedtype Feedback: Codable & Sendable = NoFeedback

    /// The kind's unique name; workers handshake with it.
    static var name: String { get }

    // MARK: Master side

    /// The request for `task` on a worker with `status`, or nil when the task is no longer
    /// valid (it is skipped and reported as ``TaskFailure/expired``).
    func request(for task: Task, status: WorkerStatus<Competence>) -> Request?

    /// Whether a worker with `status` may take `task`. A task no worker matches waits.
    func matches(_ task: Task, status: WorkerStatus<Competence>) -> Bool

    /// Uses a response: keep the worker (with new competence, injecting tasks) or end it.
    func use(_ response: Response, for task: Task, status: WorkerStatus<Competence>)
        -> ResponseDecision<Task, Competence>

    /// A request or response could not be encoded or decoded. The task gets no response.
    func marshalFailed(_ error: MarshalError, task: Task)

    /// The single hook for a task cancelled, expired, or lost with its worker; `task` is nil
    /// when a worker died between tasks.
    func cancelledExpiredOrWorkerDied(_ task: Task?, reason: TaskFailure)

    /// Feedback a worker emitted while running `task`; arrives in order, before the response.
    func forward(_ feedback: Feedback, from worker: WorkerID, task: Task)

    /// A short name for logs and snapshots.
    func name(of task: Task) -> String

    /// Extra environment for worker processes of this kind (process backend only).
    var workerEnvironment: [String: String] { get }

    // MARK: Worker side

    /// Processes one request on a worker. Runs on a worker thread or in a worker process.
    static func perform(_ request: Request, context: PerformContext<Feedback>) -> Response

    /// Feedback the master broadcast; delivered to each live worker between tasks.
    static func received(broadcast feedback: Feedback)
}

extension TaskKind {
    public static var name: String { String(describing: Self.self) }
    public func matches(_ task: Task, status: WorkerStatus<Competence>) -> Bool { true }
    public func marshalFailed(_ error: MarshalError, task: Task) {}
    public func forward(_ feedback: Feedback, from worker: WorkerID, task: Task) {}
    public func name(of task: Task) -> String { String(describing: task) }
    public var workerEnvironment: [String: String] { [:] }
    public static func received(broadcast feedback: Feedback) {}
}
