import Logging
import Metrics
import SpindleKernel

extension TaskQueue {
    /// A queue's options.
    public struct Configuration: Sendable {
        /// Pool size; the pool keeps it through deaths and `.end`.
        public var workers: Int = 2
        /// Most tasks a worker holds at once. 1 (the default) sends the next task only after
        /// the previous answer, exactly the reference's model. Larger values pipeline tasks
        /// (each matched against the worker's status when sent) for throughput.
        public var prefetch: Int = 1
        /// When set, each worker holds only as many tasks (up to `prefetch`) as it runs in
        /// about this long, judged by its recent tasks: fast tasks are pipelined deeply, slow
        /// ones go out one at a time and spread over the workers. nil: always up to `prefetch`.
        public var prefetchTarget: Duration? = nil
        /// Most tasks waiting in the queue: `enqueue` suspends and `tryEnqueue` throws above it.
        public var limit: Int = 1 << 20
        /// The clock deadlines are measured on.
        public var clock: any SpindleClock = SystemClock()
        /// How often queued deadlines are checked while any exist.
        public var deadlineCheckInterval: Duration = .milliseconds(10)
        /// How long `shutdown()` lets running tasks finish before killing their workers.
        public var shutdownGrace: Duration = .seconds(5)
        /// Consecutive failed starts after which a pool slot waits `restartBackoff` before it is
        /// tried again. When every slot is waiting so, the queue has no worker that can start:
        /// queued tasks fail with ``TaskFailure/noWorker(cause:)`` and `enqueue` throws
        /// ``TaskQueueError/noWorkerCanStart(cause:)`` until a worker starts.
        public var maxStartFailures: Int = 3
        /// The first wait before a slot that could not start is tried again; it doubles with
        /// each further failure, up to `restartBackoffLimit`.
        public var restartBackoff: Duration = .milliseconds(250)
        /// The longest wait between restarts of a slot that cannot start.
        public var restartBackoffLimit: Duration = .seconds(30)
        /// Tasks a worker answers before it is retired and a fresh one replaces it (like
        /// `.end`; Python's `max_tasks_per_child`, Celery's `worker_max_tasks_per_child`).
        /// nil: no limit.
        public var maxTasksPerWorker: Int? = nil
        /// How long a task that ran past its `timeLimit` has, once its cancel flag is up, to
        /// answer before its worker is killed.
        public var timeLimitGrace: Duration = .seconds(1)
        /// A limiter shared with other queues, or nil for none.
        public var tokens: ExecutionTokens? = nil
        /// This queue's priority when waiting for a token.
        public var tokenPriority: ExecutionTokens.Priority = .low
        public var logger = Logger(label: "spindle.taskqueue")
        /// Where the `spindle_queue_*` metrics go (nil: the global `MetricsSystem`).
        public var metricsFactory: (any MetricsFactory)? = nil

        public init(workers: Int = 2) { self.workers = workers }

        @usableFromInline
        func validate() throws(TaskQueueError) {
            if workers < 1 { throw .invalidConfiguration("workers must be at least 1, got \(workers)") }
            if prefetch < 1 { throw .invalidConfiguration("prefetch must be at least 1, got \(prefetch)") }
            if limit < 1 { throw .invalidConfiguration("limit must be at least 1, got \(limit)") }
            if let m = maxTasksPerWorker, m < 1 {
                throw .invalidConfiguration("maxTasksPerWorker must be at least 1, got \(m)")
            }
            if restartBackoff < .zero { throw .invalidConfiguration("restartBackoff must not be negative, got \(restartBackoff)") }
            if let t = prefetchTarget, t <= .zero { throw .invalidConfiguration("prefetchTarget must be positive, got \(t)") }
            if timeLimitGrace < .zero { throw .invalidConfiguration("timeLimitGrace must not be negative, got \(timeLimitGrace)") }
            if deadlineCheckInterval <= .zero {
                throw .invalidConfiguration("deadlineCheckInterval must be positive, got \(deadlineCheckInterval)")
            }
        }
    }
}
