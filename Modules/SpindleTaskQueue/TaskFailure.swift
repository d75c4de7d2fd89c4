/// Why a task produced no value: what a ``TaskHandle`` fails with, and the argument of the
/// kind's single failure hook ``TaskKind/cancelledExpiredOrWorkerDied(_:reason:)``.
public enum TaskFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The task was cancelled (its handle, its cancel switch, `cancelAll`): removed while
    /// queued, withdrawn while prefetched, or its worker killed (process) or abandoned
    /// (thread) while running.
    case cancelled
    /// The task's deadline passed before it started, or `request(for:status:)` returned nil.
    case expired
    /// The task ran longer than its `timeLimit`: its cancel flag was set and, when it had not
    /// answered within the queue's `timeLimitGrace`, its worker was killed.
    case timedOut(limit: Duration)
    /// The worker running the task died (crash, `kill -9`, closed pipe) on the last of
    /// `attempts` attempts; `lastState` names the worker and how it ended.
    case workerDied(attempts: Int, lastState: String)
    /// The request or the response could not be encoded or decoded (or did not fit a frame).
    case marshalFailed(direction: MarshalError.Direction, description: String)
    /// `perform` (or the kind's ``TaskKind/output(from:for:)``) threw this error. From a
    /// worker process, an error of a type the kind lists in ``TaskKind/errorTypes`` arrives as
    /// itself; any other as a ``RemoteTaskError`` carrying its type name and description.
    case failed(any Error)
    /// No worker of the queue can start; the cause names the exit status or spawn error of the
    /// last attempt.
    case noWorker(cause: String)
    /// The queue shut down before the task ran.
    case shutDown

    public var description: String {
        switch self {
        case .cancelled: "cancelled"
        case .expired: "expired"
        case .timedOut(let limit): "timed out after its limit of \(limit)"
        case .workerDied(let attempts, let last):
            attempts == 1 ? "worker died: \(last)" : "worker died on each of \(attempts) attempts; last: \(last)"
        case .marshalFailed(let direction, let text): "failed \(direction.rawValue): \(text)"
        case .failed(let error): "failed: \(error)"
        case .noWorker(let cause): "no worker could be started: \(cause)"
        case .shutDown: "queue shut down"
        }
    }

    /// Two failures are equal when they are the same case with equal payloads; two
    /// `.failed` errors are equal when they have the same type and the same description.
    public static func == (a: TaskFailure, b: TaskFailure) -> Bool {
        switch (a, b) {
        case (.cancelled, .cancelled), (.expired, .expired), (.shutDown, .shutDown): true
        case (.timedOut(let x), .timedOut(let y)): x == y
        case (.workerDied(let n, let s), .workerDied(let m, let t)): n == m && s == t
        case (.marshalFailed(let d, let s), .marshalFailed(let e, let t)): d == e && s == t
        case (.noWorker(let x), .noWorker(let y)): x == y
        case (.failed(let x), .failed(let y)):
            String(reflecting: type(of: x)) == String(reflecting: type(of: y)) && "\(x)" == "\(y)"
        default: false
        }
    }

    /// The error `.failed` carries, if this is `.failed`.
    public var error: (any Error)? {
        if case .failed(let e) = self { return e }
        return nil
    }
}

/// An error a task may throw to ask for another attempt: a task enqueued with `retries > 0`
/// is run again (after its backoff) when it throws an error whose `isRetryable` is true.
/// Other errors fail the task at once.
public protocol RetryableError: Error {
    /// Whether another attempt may succeed (default true).
    var isRetryable: Bool { get }
}

extension RetryableError {
    public var isRetryable: Bool { true }
}

/// An error thrown by `perform` in a worker process whose type the master cannot rebuild:
/// it is not `Codable`, or the kind does not list it in ``TaskKind/errorTypes``.
public struct RemoteTaskError: Error, Sendable, Codable, Equatable, CustomStringConvertible {
    /// The thrown error's type, `String(reflecting:)`.
    public var typeName: String
    /// The thrown error's description.
    public var detail: String

    public init(typeName: String, detail: String) {
        self.typeName = typeName
        self.detail = detail
    }

    public var description: String { "\(typeName): \(detail)" }
}

/// Thrown by the default synchronous `perform` of a kind that implements only the `async`
/// one: the worker then runs the asynchronous form.
@usableFromInline
package struct AsyncPerformRequired: Error, CustomStringConvertible {
    @usableFromInline package init() {}
    @usableFromInline package var description: String { "the task kind implements neither the synchronous nor the async perform" }
}

/// Whether `error` asks for another attempt (``RetryableError``).
@usableFromInline
package func isRetryable(_ error: any Error) -> Bool {
    (error as? any RetryableError)?.isRetryable ?? false
}
