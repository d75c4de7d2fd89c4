import SpindleTaskQueue

extension TaskQueue {
    /// A queue whose workers are child processes running `job`: this executable re-entered
    /// in worker mode, so its `main.swift` must start with
    /// `ProcessWorkerMain.runIfWorker(jobs: [Job.self, …])`.
    ///
    /// ```swift
    /// ProcessWorkerMain.runIfWorker(jobs: [Square.self])
    /// let queue = try await TaskQueue(processWorkersFor: Square.self, workers: 2)
    /// let squares = try await queue.map(1...100)     // [Result<Int, TaskFailure>]
    /// await queue.shutdown()                          // no worker process remains
    /// ```
    /// - Parameters:
    ///   - workers: worker processes (default: one per core).
    ///   - configuration: the queue's options (its `workers` is replaced by `workers`).
    ///     Default: ``jobConfiguration`` (adaptive prefetch, up to 128 tasks per worker).
    ///   - processes: the backend's options (executable, environment, frame limit, …).
    public convenience init<Job: ProcessJob>(processWorkersFor job: Job.Type, workers: Int? = nil,
                                             configuration: Configuration? = nil,
                                             processes: ProcessWorkerBackend<JobKind<Job>>.Configuration = .init())
        async throws(TaskQueueError) where Kind == JobKind<Job> {
        var config = configuration ?? Self.jobConfiguration
        config.workers = workers ?? ProcessWorkerBackend<JobKind<Job>>.activeCores
        let backend = try ProcessWorkerBackend<JobKind<Job>>(configuration: processes)
        try await self.init(kind: JobKind<Job>(), backend: backend, configuration: config)
    }
}

extension TaskQueue {
    /// The default options of a queue of process jobs: like `Configuration()`, but each
    /// worker holds as many tasks as it runs in about 2 ms, up to 128 (jobs keep no state
    /// between tasks, so pipelining them is safe; it saves a round trip per fast task, while
    /// slow tasks still go out one at a time and spread over the workers; a cancelled
    /// prefetched task is withdrawn).
    public static var jobConfiguration: Configuration {
        var c = Configuration()
        c.prefetch = 128
        c.prefetchTarget = .milliseconds(2)
        return c
    }
}

extension ProcessWorkerBackend {
    /// The machine's online cores, at least 1: the default number of worker processes.
    public static var activeCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

#if canImport(Glibc)
import Glibc
#endif
