// The worker executable of the SpindleProcessWorkers tests: re-entered in worker mode by the
// process backend. `TaskQueueWorkerFixture readme-example` runs the README's example (its
// workers are this executable again) and prints the sum of the squares; run by hand otherwise
// it only explains itself.
import SpindleProcessWorkers
import TaskQueueFixtureKinds

#if canImport(Glibc)
import Glibc
#endif

ProcessWorkerMain.runIfWorker(kinds: [FixtureKind.self, OtherFixtureKind.self, NoteKind.self], jobs: fixtureJobs)
if CommandLine.arguments.dropFirst().first == "readme-example" {
    do {
        let squares = try await ReadmeExample.run()
        let values = squares.compactMap { try? $0.get() }
        print("results \(squares.count) ok \(values.count) in-order \(values == (1...100).map { $0 * $0 }) sum \(values.reduce(0, +))")
        exit(0)
    } catch {
        print("readme example failed: \(error)")
        exit(1)
    }
}
let note = Array("TaskQueueWorkerFixture: a task-queue worker for tests; started by ProcessWorkerBackend, not by hand\n".utf8)
_ = note.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
exit(2)
