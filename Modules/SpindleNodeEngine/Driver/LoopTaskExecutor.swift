import SpindleEventLoop

/// An event loop as a `TaskExecutor`: a task that prefers it runs its nonisolated code on the
/// loop thread, and continuations the loop resumes continue there.
final class LoopTaskExecutor: TaskExecutor {
    let loop: EventLoop

    init(loop: EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { [self] in job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}

extension NodeDriver {
    /// The driver's loop as a task executor. A task that mostly awaits this driver's calls
    /// can prefer it, so each call is started and resumed on the loop thread, with no hop to
    /// the cooperative pool and back:
    ///
    /// ```swift
    /// await withTaskExecutorPreference(driver.callerExecutor) {
    ///     for x in inputs { results.append(try await driver.call(site: "ask", value: x)) }
    /// }
    /// ```
    /// Keep blocking or long CPU work out of such a task: it runs on the loop.
    public var callerExecutor: any TaskExecutor { taskExecutor }
}
