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
    ///   - processes: the backend's options (executable, environment, frame limit, …).
    public convenience init<Job: ProcessJob>(processWorkersFor job: Job.Type, workers: Int? = nil,
                                             configuration: Configuration = Configuration(),
                                             processes: ProcessWorkerBackend<JobKind<Job>>.Configuration = .init())
        async throws(TaskQueueError) where Kind == JobKind<Job> {
        var config = configuration
        config.workers = workers ?? ProcessWorkerBackend<JobKind<Job>>.activeCores
        let backend = try ProcessWorkerBackend<JobKind<Job>>(configuration: processes)
        try await self.init(kind: JobKind<Job>(), backend: backend, configuration: config)
    }
}

extension ProcessWorkerBackend {
    /// The machine's online cores, at least 1: the default number of worker processes.
    public static var activeCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

#if canImport(Glibc)
import Glibc
#endif
