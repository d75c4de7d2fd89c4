/// The ``TaskKind`` of a queue of closures on thread workers: the front door for work that
/// needs no kind of its own.
///
/// ```swift
/// let queue = try await TaskQueue(threads: 4)                 // TaskQueue<ClosureKind>
/// let answer = try await queue.submit { expensive(42) }       // TaskHandle<Int>
/// print(try await answer.value)
/// let lengths = try await queue.map(words) { $0.count }      // [Result<Int, TaskFailure>]
/// await queue.shutdown()
/// ```
///
/// Closures never leave the process: a `ClosureKind` queue runs on ``ThreadWorkerBackend``
/// only (its requests refuse to be encoded). A closure may be `async` and may throw; its
/// error reaches the handle as ``TaskFailure/failed(_:)``.
public struct ClosureKind: TaskKind {
    /// A closure to run, synchronous or asynchronous.
    public struct Work: Sendable, Codable, CustomStringConvertible {
        @usableFromInline
        enum Body: Sendable {
            case sync(@Sendable () throws -> any Sendable)
            case async(@Sendable () async throws -> any Sendable)
        }

        @usableFromInline let body: Body
        /// A name for logs and snapshots.
        public let label: String

        @inlinable
        init(label: String, body: Body) {
            self.label = label
            self.body = body
        }

        public var description: String { label }

        /// Closures cannot be encoded: a `ClosureKind` queue needs thread workers.
        public func encode(to encoder: any Encoder) throws {
            throw EncodingError.invalidValue(label, .init(codingPath: encoder.codingPath,
                debugDescription: "a closure cannot leave its process; run ClosureKind on thread workers"))
        }

        public init(from decoder: any Decoder) throws {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "a closure cannot be decoded; run ClosureKind on thread workers"))
        }
    }

    /// A closure's result, not encoded (thread workers pass values as they are).
    public struct Value: Sendable, Codable {
        @usableFromInline let value: any Sendable

        @inlinable
        init(_ value: any Sendable) { self.value = value }

        public func encode(to encoder: any Encoder) throws {
            throw EncodingError.invalidValue(0, .init(codingPath: encoder.codingPath,
                debugDescription: "a closure's result is not encoded; run ClosureKind on thread workers"))
        }

        public init(from decoder: any Decoder) throws {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "a closure's result is not decoded; run ClosureKind on thread workers"))
        }
    }

    public typealias Task = Work
    public typealias Competence = Int
    public typealias Request = Work
    public typealias Response = Value
    public typealias Output = any Sendable

    public init() {}

    public static var name: String { "closures" }

    @inlinable
    public func request(for task: Work, status: WorkerStatus<Int>) -> Work? { task }

    @inlinable
    public func use(_ response: Value, for task: Work, status: WorkerStatus<Int>) -> ResponseDecision<Work, Int> {
        .stay(0, inject: [])
    }

    @inlinable
    public func output(from response: Value, for task: Work) throws -> any Sendable { response.value }

    /// Outcomes reach the handles; nothing else to do.
    public func cancelledExpiredOrWorkerDied(_ task: Work?, reason: TaskFailure) {}

    /// Cannot happen on thread workers; the handle fails if it does.
    public func marshalFailed(_ error: MarshalError, task: Work) {}

    public func name(of task: Work) -> String { task.label }

    @inlinable
    public static func perform(_ request: Work, context: PerformContext<NoFeedback>) throws -> Value {
        switch request.body {
        case .sync(let body): return Value(try body())
        case .async: throw AsyncPerformRequired()
        }
    }

    public static func perform(_ request: Work, context: PerformContext<NoFeedback>) async throws -> Value {
        switch request.body {
        case .sync(let body): return Value(try body())
        case .async(let body): return Value(try await body())
        }
    }
}

extension TaskQueue where Kind == ClosureKind {
    /// A queue of `threads` thread workers running closures (default: one per core).
    @inlinable
    public convenience init(threads: Int = ProcessInfoLite.activeProcessorCount) async throws(TaskQueueError) {
        try await self.init(kind: ClosureKind(), configuration: Configuration(workers: threads))
    }

    /// Runs `body` on a worker thread.
    /// - Returns: its handle: `try await handle.value` is what `body` returned.
    @inlinable @discardableResult
    public func submit<T: Sendable>(priority: QueuePriority = .normal, options: TaskOptions = TaskOptions(),
                                    _ body: @escaping @Sendable () throws -> T) async throws(TaskQueueError) -> TaskHandle<T> {
        let work = ClosureKind.Work(label: "closure → \(T.self)", body: .sync { try body() })
        return TaskHandle(try await enqueue(work, priority: priority, options: options))
    }

    /// Runs the `async` `body` as a Swift task while a worker thread waits for it.
    @inlinable @discardableResult
    public func submit<T: Sendable>(priority: QueuePriority = .normal, options: TaskOptions = TaskOptions(),
                                    _ body: @escaping @Sendable () async throws -> T) async throws(TaskQueueError) -> TaskHandle<T> {
        let work = ClosureKind.Work(label: "async closure → \(T.self)", body: .async { try await body() })
        return TaskHandle(try await enqueue(work, priority: priority, options: options))
    }

    /// Runs `transform` on every input on the worker threads; results in input order.
    @inlinable
    public func map<Input: Sendable, T: Sendable>(_ inputs: some Sequence<Input>, priority: QueuePriority = .normal,
                                                  options: TaskOptions = TaskOptions(),
                                                  _ transform: @escaping @Sendable (Input) throws -> T)
        async throws(TaskQueueError) -> [Result<T, TaskFailure>] {
        let work = inputs.map { input in
            ClosureKind.Work(label: "map → \(T.self)", body: .sync { try transform(input) })
        }
        return try await map(work, priority: priority, options: options).map { TaskHandle<T>.cast($0) }
    }
}
