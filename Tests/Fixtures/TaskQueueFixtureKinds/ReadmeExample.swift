// The README's "run 100 jobs on process workers and collect the results" example, line for
// line (Square is in FixtureJobs.swift). The fixture executable runs it for
// `TaskQueueWorkerFixture readme-example`, so it is compiled and executed as a real program:
// its worker processes are the fixture itself, re-entered in worker mode.
import SpindleProcessWorkers
import SpindleTaskQueue

public enum ReadmeExample {
    /// The README lines; returns the results for the test to check.
    public static func run() async throws -> [Result<Int, TaskFailure>] {
        // --- README begins ---
        ProcessWorkerMain.runIfWorker(jobs: [Square.self])           // worker processes serve here
        let queue = try await TaskQueue(processWorkersFor: Square.self, workers: 2)
        let squares = try await queue.map(1...100)                   // [Result<Int, TaskFailure>], input order
        await queue.shutdown()
        // --- README ends ---
        return squares
    }
}
