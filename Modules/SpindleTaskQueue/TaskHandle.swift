import SpindleKernel
import Synchronization

/// A task in a ``TaskQueue``: await its outcome, or cancel it.
///
/// ```swift
/// let handle = try await queue.enqueue(task, options: .init(retries: 2, timeLimit: .seconds(30)))
/// switch await handle.result {
/// case .success(let value): print(value)
/// case .failure(.timedOut(let limit)): print("gave up after \(limit)")
/// case .failure(let failure): print(failure)
/// }
/// ```
///
/// A handle is a value: copy it freely. The outcome is decided once: the value the kind
/// derives from the response (``TaskKind/output(from:for:)``), or a ``TaskFailure``.
/// The reference model's hooks still run as before (`use`, `cancelledExpiredOrWorkerDied`, …).
public struct TaskHandle<Output: Sendable>: Sendable {
    @usableFromInline let ticket: TaskTicket
    @usableFromInline let canceller: @Sendable (TaskTicket) -> Void

    @inlinable
    init(ticket: TaskTicket, canceller: @escaping @Sendable (TaskTicket) -> Void) {
        self.ticket = ticket
        self.canceller = canceller
    }

    /// The same task seen with another output type (for queues whose kind erases it).
    @usableFromInline
    init<Other>(_ other: TaskHandle<Other>) {
        ticket = other.ticket
        canceller = other.canceller
    }

    /// The task's outcome, once it has one.
    public var result: Result<Output, TaskFailure> {
        get async { TaskHandle.cast(await ticket.outcome()) }
    }

    /// The task's value, or the ``TaskFailure`` that ended it.
    public var value: Output {
        get async throws(TaskFailure) { try await result.get() }
    }

    /// The outcome if the task already has one.
    public var currentResult: Result<Output, TaskFailure>? {
        ticket.currentOutcome.map(TaskHandle.cast)
    }

    /// Cancels the task: removed if queued, withdrawn if prefetched, its worker killed
    /// (process) or abandoned (thread) if running. The handle then fails with
    /// ``TaskFailure/cancelled``, unless it already had an outcome. Returns once that is
    /// decided.
    public func cancel() { canceller(ticket) }

    @usableFromInline
    static func cast(_ outcome: Result<any Sendable, TaskFailure>) -> Result<Output, TaskFailure> {
        switch outcome {
        case .success(let value):
            if let typed = value as? Output { return .success(typed) }
            return .failure(.failed(RemoteTaskError(typeName: String(reflecting: type(of: value)),
                                                    detail: "a task's output is not a \(Output.self)")))
        case .failure(let failure):
            return .failure(failure)
        }
    }
}

/// Options of one task enqueued with a handle.
public struct TaskOptions: Sendable {
    /// Expire the task if it has not started within this long (on the queue's clock).
    public var timeout: Duration?
    /// Further attempts after the worker running the task died, or `perform` threw a
    /// ``RetryableError`` that is retryable.
    public var retries: Int
    /// The wait before the first retry; each further retry waits twice as long (capped at
    /// one minute).
    public var retryBackoff: Duration
    /// How long the task may run: then its cancel flag is set (`PerformContext.isCancelled`)
    /// and, if it has not answered within the queue's `timeLimitGrace`, its worker is killed.
    /// It fails with ``TaskFailure/timedOut(limit:)``; a timed-out task is not retried.
    public var timeLimit: Duration?

    public init(timeout: Duration? = nil, retries: Int = 0, retryBackoff: Duration = .milliseconds(100),
                timeLimit: Duration? = nil) {
        self.timeout = timeout
        self.retries = retries
        self.retryBackoff = retryBackoff
        self.timeLimit = timeLimit
    }

    /// Checks the options; the error names the field.
    @usableFromInline
    func validate() throws(TaskQueueError) {
        if retries < 0 { throw .invalidConfiguration("retries must not be negative, got \(retries)") }
        if retryBackoff < .zero { throw .invalidConfiguration("retryBackoff must not be negative, got \(retryBackoff)") }
        if let t = timeLimit, t <= .zero { throw .invalidConfiguration("timeLimit must be positive, got \(t)") }
        if let t = timeout, t < .zero { throw .invalidConfiguration("timeout must not be negative, got \(t)") }
    }
}

/// The master's record of one task enqueued with a handle: its options, its attempts and
/// its outcome.
///
/// `@unchecked Sendable`: `attempts`, `startedAt`, `interruptedAt` and `notBefore` are read and
/// written only by the ``TaskScheduler``, which the queue runs under its lock; the outcome and
/// its waiters are behind `state`'s Mutex; everything else is immutable.
public final class TaskTicket: @unchecked Sendable {
    @usableFromInline
    struct State {
        var outcome: Result<any Sendable, TaskFailure>?
        var waiters: [CheckedContinuation<Result<any Sendable, TaskFailure>, Never>] = []
        var observer: (@Sendable (Result<any Sendable, TaskFailure>) -> Void)?
    }

    let retries: Int
    let retryBackoff: Duration
    @usableFromInline let timeLimit: Duration?
    /// Times the task was handed to a worker (scheduler only).
    @usableFromInline var attempts = 0
    /// When its current attempt started running (scheduler only; time-limited tasks).
    @usableFromInline var startedAt: MonotonicInstant?
    /// When its cancel flag was raised for running past its limit (scheduler only).
    @usableFromInline var interruptedAt: MonotonicInstant?
    /// When a retry may start (scheduler only).
    var notBefore: MonotonicInstant?
    private let state: Mutex<State>
    /// Set (after the outcome is stored) once the task has an outcome: waiters check it
    /// without the lock.
    private let decided = Atomic<Bool>(false)

    @usableFromInline
    init(options: TaskOptions, observer: (@Sendable (Result<any Sendable, TaskFailure>) -> Void)? = nil) {
        retries = max(0, options.retries)
        retryBackoff = options.retryBackoff
        timeLimit = options.timeLimit
        state = Mutex(State(observer: observer))
    }

    /// Decides the outcome (the first call wins); wakes the waiters and the observer.
    @usableFromInline @discardableResult
    func resolve(_ outcome: Result<any Sendable, TaskFailure>) -> Bool {
        let (first, waiters, observer) = state.withLock { s -> (Bool, [CheckedContinuation<Result<any Sendable, TaskFailure>, Never>], (@Sendable (Result<any Sendable, TaskFailure>) -> Void)?) in
            guard s.outcome == nil else { return (false, [], nil) }
            s.outcome = outcome
            decided.store(true, ordering: .releasing)
            let w = s.waiters
            s.waiters = []
            let o = s.observer
            s.observer = nil
            return (true, w, o)
        }
        guard first else { return false }
        for w in waiters { w.resume(returning: outcome) }
        observer?(outcome)
        return true
    }

    var currentOutcome: Result<any Sendable, TaskFailure>? { state.withLock { $0.outcome } }

    var isResolved: Bool { state.withLock { $0.outcome != nil } }

    /// The outcome, waiting for it if need be (suspending only when it has none yet).
    ///
    /// No spinning before the suspension: on a machine with few cores the spinning caller
    /// takes the core the worker's answer needs (docs/benchmarks.md, "Design measurements").
    @usableFromInline
    func outcome() async -> Result<any Sendable, TaskFailure> {
        if decided.load(ordering: .acquiring), let ready = currentOutcome { return ready }
        return await withCheckedContinuation { (c: CheckedContinuation<Result<any Sendable, TaskFailure>, Never>) in
            let ready = state.withLock { s -> Result<any Sendable, TaskFailure>? in
                if let o = s.outcome { return o }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// The wait before retry number `attempt` (1 = the first retry).
    func backoff(beforeRetry attempt: Int) -> Duration {
        let cap = Duration.seconds(60)
        var wait = retryBackoff
        var n = 1
        while n < attempt && wait < cap {
            wait = wait * 2
            n += 1
        }
        return min(wait, cap)
    }
}
