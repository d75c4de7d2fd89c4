/// A consistent picture of a queue at one moment.
public struct TaskQueueSnapshot: Sendable, CustomStringConvertible {
    /// What one pool slot is doing.
    public enum WorkerState: Sendable, Equatable, CustomStringConvertible {
        case starting
        case idle
        /// Running (or holding, with prefetch) tasks; the name is the running one's.
        case busy(task: String, inFlight: Int)
        /// Dead and not (yet) replaced: shutting down, or it could not be started.
        case dead

        public var description: String {
            switch self {
            case .starting: "starting"
            case .idle: "idle"
            case .busy(let t, let n): n > 1 ? "busy(\(t), +\(n - 1) prefetched)" : "busy(\(t))"
            case .dead: "dead"
            }
        }
    }

    public struct Worker: Sendable, CustomStringConvertible {
        public var id: WorkerID
        public var state: WorkerState
        /// Tasks this slot answered, over all its incarnations.
        public var completed: Int
        public var description: String { "\(id) \(state) completed=\(completed)" }
    }

    /// Totals since the queue was created.
    public struct Counters: Sendable, Equatable {
        public var enqueued = 0
        public var completed = 0
        public var cancelled = 0
        public var expired = 0
        public var lostWithWorker = 0
        public var marshalFailures = 0
        public var workerDeaths = 0
        public var workersStarted = 0
        public var workersRetired = 0
        public var requeued = 0
        public var shutDown = 0
        /// Tasks whose `perform` threw (after their last attempt).
        public var failed = 0
        /// Tasks that ran past their time limit.
        public var timedOut = 0
        /// Attempts started again after a worker death or a retryable error.
        public var retried = 0
        /// Prefetched tasks taken back from a worker because they were cancelled.
        public var withdrawn = 0
        /// Broadcasts a worker could not decode, or the master could not encode.
        public var broadcastFailures = 0
    }

    public var queued: Int
    /// Tasks waiting out a retry backoff (not counted in `queued`).
    public var waitingForRetry: Int = 0
    /// Why no worker can start, while that is so (then `enqueue` fails at once).
    public var noWorkerCause: String? = nil
    public var queuedByPriority: [QueuePriority: Int]
    public var workers: [Worker]
    public var counters: Counters

    public var description: String {
        "queued=\(queued)\(waitingForRetry > 0 ? " retrying=\(waitingForRetry)" : "")\(noWorkerCause.map { " no-worker(\($0))" } ?? "") workers=[\(workers.map(\.description).joined(separator: ", "))] \(counters)"
    }
}
