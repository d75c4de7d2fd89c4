// The worker executable of the SpindleProcessWorkers tests: re-entered in worker mode by the
// process backend. Run by hand it only explains itself.
import SpindleProcessWorkers
import TaskQueueFixtureKinds

#if canImport(Glibc)
import Glibc
#endif

ProcessWorkerMain.runIfWorker(kinds: [FixtureKind.self, OtherFixtureKind.self])
let note = Array("TaskQueueWorkerFixture: a task-queue worker for tests; started by ProcessWorkerBackend, not by hand\n".utf8)
_ = note.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
exit(2)
