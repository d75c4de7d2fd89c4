/// A job type for the task queue's front door: Codable input and output and a `run`
/// function. No ``TaskKind`` to write.
///
/// ```swift
/// struct Square: ProcessJob {
///     static func run(_ x: Int) -> Int { x * x }
/// }
/// // process workers (SpindleProcessWorkers): first line of main
/// ProcessWorkerMain.runIfWorker(jobs: [Square.self])
/// let queue = try await TaskQueue(processWorkersFor: Square.self, workers: 2)
/// let squares = try await queue.map(1...100)        // [Result<Int, TaskFailure>], input order
/// ```
///
/// Implement the synchronous `run` or the `async` one; either may throw. A thrown error fails
/// that task with ``TaskFailure/failed(_:)``: from a worker process it arrives as itself when
/// its type is listed in `errorTypes`, else as a ``RemoteTaskError``. Errors conforming to
/// ``RetryableError`` are retried when the task was enqueued with `retries`.
///
/// The same job runs on thread workers too: `TaskQueue(kind: JobKind<Square>())`.
public protocol ProcessJob: Sendable {
    /// What a task is given (sent to the worker as JSON).
    associatedtype Input: Codable & Sendable
    /// What a task produces (sent back as JSON).
    associatedtype Output: Codable & Sendable

    /// The name worker processes handshake with; default: the type's name.
    static var name: String { get }

    /// Runs one task. Default: the `async` form is required.
    static func run(_ input: Input) throws -> Output

    /// Runs one task asynchronously. Default: the synchronous form.
    static func run(_ input: Input) async throws -> Output

    /// Error types `run` may throw that should reach the master as themselves.
    static var errorTypes: [any (Error & Codable).Type] { get }
}

extension ProcessJob {
    public static var name: String { String(describing: Self.self) }
    public static var errorTypes: [any (Error & Codable).Type] { [] }

    public static func run(_ input: Input) throws -> Output {
        throw AsyncPerformRequired()
    }

    public static func run(_ input: Input) async throws -> Output {
        func synchronous() throws -> Output { try run(input) }
        return try synchronous()
    }
}

/// The ``TaskKind`` that runs a ``ProcessJob``: a task is the job's input, its handle
/// delivers the job's output. Workers are persistent (`.stay`) and keep no competence.
public struct JobKind<Job: ProcessJob>: TaskKind {
    public typealias Task = Job.Input
    public typealias Competence = Int
    public typealias Request = Job.Input
    public typealias Response = Job.Output
    public typealias Feedback = NoFeedback

    public init() {}

    public static var name: String { Job.name }
    public static var errorTypes: [any (Error & Codable).Type] { Job.errorTypes }

    @inlinable
    public func request(for task: Job.Input, status: WorkerStatus<Int>) -> Job.Input? { task }

    @inlinable
    public func use(_ response: Job.Output, for task: Job.Input, status: WorkerStatus<Int>) -> ResponseDecision<Job.Input, Int> {
        .stay(0, inject: [])
    }

    /// Outcomes reach the tasks' handles; nothing else to do.
    public func cancelledExpiredOrWorkerDied(_ task: Job.Input?, reason: TaskFailure) {}

    /// Failures reach the tasks' handles; nothing else to do.
    public func marshalFailed(_ error: MarshalError, task: Job.Input) {}

    public func name(of task: Job.Input) -> String { "\(Job.name)(\(task))" }

    @inlinable
    public static func perform(_ request: Job.Input, context: PerformContext<NoFeedback>) throws -> Job.Output {
        try Job.run(request)
    }

    public static func perform(_ request: Job.Input, context: PerformContext<NoFeedback>) async throws -> Job.Output {
        try await Job.run(request)
    }
}

extension TaskQueue {
    /// A queue of thread workers running `job`: `TaskQueue(threadWorkersFor: Square.self)`.
    /// (Process workers: `TaskQueue(processWorkersFor:)` in SpindleProcessWorkers.)
    @inlinable
    public convenience init<Job: ProcessJob>(threadWorkersFor job: Job.Type,
                                             workers: Int = ProcessInfoLite.activeProcessorCount,
                                             configuration: Configuration? = nil) async throws(TaskQueueError)
        where Kind == JobKind<Job> {
        var config = configuration ?? Configuration(workers: workers)
        if configuration == nil { config.workers = workers }
        try await self.init(kind: JobKind<Job>(), configuration: config)
    }
}
