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
/// `use`, `marshalFailed`, `cancelledExpiredOrWorkerDied`, `forward` and `broadcastFailed`
/// run outside the scheduler's lock, on a worker thread or the process backend's loop: they
/// may call the queue (`enqueue`, `cancel`, …). `matches` and `request(for:status:)` are
/// scheduling decisions and run under the lock: decide there, do not call the queue.
///
/// The common case needs no kind of your own: ``ProcessJob`` (Codable input and output, a
/// `run` function) or a queue of closures (``ClosureKind``), with ``TaskQueue/map(_:priority:options:)``.
///
/// ```
///  master                                   worker
///  ──────                                   ──────
///  matches(task, status)?  ──┐
///  request(for: task) ───────┼── Request ──▶ perform(request, context)  (may be async, may throw)
///                            │                 │ context.emit(feedback) ──▶ forward(feedback…)
///  use(response, for: task) ◀┴── Response ─────┘
///     .stay(competence, inject:) | .end
///  output(from: response) ──▶ the task's handle
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
    /// What a task's ``TaskHandle`` delivers: by default the response itself.
    associatedtype Output: Sendable = Response

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

    /// The value a task's handle delivers for `response` (after `use`). A throw fails the
    /// handle with ``TaskFailure/failed(_:)``. Default (when `Output == Response`): the response.
    func output(from response: Response, for task: Task) throws -> Output

    /// A request, response or feedback could not be encoded or decoded. The task gets no
    /// response (feedback failures do not end it). Default: reports a request or response
    /// failure through ``cancelledExpiredOrWorkerDied(_:reason:)`` as
    /// ``TaskFailure/marshalFailed(direction:description:)``, so nothing vanishes. The task's
    /// handle fails in any case.
    func marshalFailed(_ error: MarshalError, task: Task)

    /// A broadcast could not be decoded by `worker` (the queue also logs it and counts it in
    /// its snapshot). Default: nothing more.
    func broadcastFailed(_ error: MarshalError, worker: WorkerID)

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

    /// Processes one request on a worker thread or in a worker process. Implement this
    /// synchronous form, or the `async` one; a thrown error fails the task with
    /// ``TaskFailure/failed(_:)`` (or retries it, see ``RetryableError``).
    static func perform(_ request: Request, context: PerformContext<Feedback>) throws -> Response

    /// Processes one request asynchronously. Default: the synchronous form. A worker runs the
    /// synchronous form when the kind has one, at no extra cost; an `async` perform runs as a
    /// Swift task while the worker waits for it.
    static func perform(_ request: Request, context: PerformContext<Feedback>) async throws -> Response

    /// Error types `perform` may throw that should reach the master as themselves from a worker
    /// process (each is encoded as JSON with its type name). Others arrive as
    /// ``RemoteTaskError``. Thread workers pass every error unchanged.
    static var errorTypes: [any (Error & Codable).Type] { get }

    /// Feedback the master broadcast; delivered to each live worker between tasks.
    static func received(broadcast feedback: Feedback)
}

extension TaskKind {
    public static var name: String { String(describing: Self.self) }
    public func matches(_ task: Task, status: WorkerStatus<Competence>) -> Bool { true }
    public func marshalFailed(_ error: MarshalError, task: Task) {
        switch error.direction {
        case .encodeFeedback, .decodeFeedback: return  // the task goes on; the queue logs it
        default: cancelledExpiredOrWorkerDied(task, reason: .marshalFailed(direction: error.direction,
                                                                           description: error.description))
        }
    }
    public func broadcastFailed(_ error: MarshalError, worker: WorkerID) {}
    public static var errorTypes: [any (Error & Codable).Type] { [] }

    /// The default synchronous form: a kind that implements only the `async` perform.
    public static func perform(_ request: Request, context: PerformContext<Feedback>) throws -> Response {
        throw AsyncPerformRequired()
    }

    /// The default asynchronous form: the synchronous one.
    public static func perform(_ request: Request, context: PerformContext<Feedback>) async throws -> Response {
        func synchronous() throws -> Response { try perform(request, context: context) }
        return try synchronous()
    }
    public func forward(_ feedback: Feedback, from worker: WorkerID, task: Task) {}
    public func name(of task: Task) -> String { String(describing: task) }
    public var workerEnvironment: [String: String] { [:] }
    public static func received(broadcast feedback: Feedback) {}
}

extension TaskKind where Output == Response {
    public func output(from response: Response, for task: Task) throws -> Output { response }
}
