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
    ///     Default: ``jobConfiguration``, which prefetches 32 tasks per worker.
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
    /// worker holds up to 32 tasks (jobs keep no state between tasks, so pipelining them is
    /// safe, and it saves a round trip per task; a cancelled prefetched task is withdrawn).
    public static var jobConfiguration: Configuration {
        var c = Configuration()
        c.prefetch = 32
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
