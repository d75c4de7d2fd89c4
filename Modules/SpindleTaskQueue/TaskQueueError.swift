/// Failures of the queue's own API.
public enum TaskQueueError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `tryEnqueue` found the queue at its limit of `limit` queued tasks.
    case full(limit: Int)
    /// The queue is shutting down or shut down; nothing more is accepted.
    case shutDown(kind: String)
    /// The configuration is not usable; `detail` says which field and why.
    case invalidConfiguration(String)
    /// The calling task was cancelled while `enqueue` waited for room; the first `accepted`
    /// tasks were queued, the others were not.
    case cancelledWhileWaiting(accepted: Int)
    /// No worker of the queue can start: every slot failed to start `maxStartFailures` times
    /// in a row. `cause` names the last attempt's exit status or spawn error. Queued tasks
    /// failed with ``TaskFailure/noWorker(cause:)``; slots keep being retried with a backoff,
    /// and the queue accepts tasks again once a worker starts.
    case noWorkerCanStart(cause: String)

    public var description: String {
        switch self {
        case .full(let limit): "task queue full: \(limit) tasks already queued"
        case .shutDown(let kind): "task queue of \(kind) is shut down"
        case .invalidConfiguration(let d): "invalid task queue configuration: \(d)"
        case .cancelledWhileWaiting(let n): "cancelled while waiting for room in the task queue; \(n) tasks had been queued"
        case .noWorkerCanStart(let cause): "no task-queue worker can start: \(cause)"
        }
    }
}
