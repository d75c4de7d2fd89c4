import TaskQueueTestSupport
import SpindleProcessWorkers
import SpindleTaskQueue
import TaskQueueFixtureKinds

#if canImport(Glibc)
import Glibc
#endif

/// Where the fixture worker executable is: the environment variable
/// `SPINDLE_TASKQUEUE_FIXTURE` when set, else `TaskQueueWorkerFixture` in the build
/// products directory, which is the directory of the running test binary
/// (`.build/<triple>/<config>/`; SwiftPM builds the fixture there because the test target
/// depends on it).
func fixtureExecutable() -> String? {
    if let raw = getenv("SPINDLE_TASKQUEUE_FIXTURE") {
        let path = String(cString: raw)
        return access(path, X_OK) == 0 ? path : nil
    }
    var candidates: [String] = []
    let me = ProcessWorkerBackend<FixtureKind>.currentExecutable()
    var dir = me
    // Walk up from the test binary (it may sit inside a bundle directory).
    for _ in 0..<4 {
        guard let slash = dir.lastIndex(of: "/") else { break }
        dir = String(dir[..<slash])
        candidates.append(dir + "/TaskQueueWorkerFixture")
    }
    return candidates.first { access($0, X_OK) == 0 }
}

/// A queue of fixture workers in child processes, with the events its hooks saw.
struct ProcessQueueHarness {
    let queue: TaskQueue<FixtureKind>
    let backend: ProcessWorkerBackend<FixtureKind>
    let events: Recorder<FixtureEvent>

    static func make(workers: Int = 2, prefetch: Int = 1, shutdownGrace: Duration = .seconds(10)) async throws -> ProcessQueueHarness {
        guard let exe = fixtureExecutable() else {
            throw FixtureMissing()
        }
        var backendConfig = ProcessWorkerBackend<FixtureKind>.Configuration()
        backendConfig.executable = exe
        let backend = try ProcessWorkerBackend<FixtureKind>(configuration: backendConfig)
        let events = Recorder<FixtureEvent>()
        var config = TaskQueue<FixtureKind>.Configuration(workers: workers)
        config.prefetch = prefetch
        config.shutdownGrace = shutdownGrace
        let queue = try await TaskQueue(kind: FixtureKind { events.record($0) }, backend: backend,
                                        configuration: config)
        return ProcessQueueHarness(queue: queue, backend: backend, events: events)
    }

    /// Waits until every slot has a live, idle worker.
    func waitUntilPoolReady(timeout: Duration = .seconds(30)) async -> Bool {
        await waitFor(timeout: timeout) {
            queue.snapshot().workers.allSatisfy { $0.state == .idle } && backend.workerPIDs.count == queue.snapshot().workers.count
        }
    }
}

struct FixtureMissing: Error, CustomStringConvertible {
    var description: String {
        "TaskQueueWorkerFixture not found next to the test binary; build with `swift build --build-tests` or set SPINDLE_TASKQUEUE_FIXTURE"
    }
}

/// Waits until `condition` holds, re-checking every few milliseconds; false after `timeout`.
/// For states with no event to wait on (pids, worker states moved by the loop thread).
func waitFor(timeout: Duration = .seconds(30), _ condition: @Sendable () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let until = clock.now + timeout
    while clock.now < until {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// Whether a process with this pid exists (zombies count: they are not reaped).
func processExists(_ pid: Int32) -> Bool {
    kill(pid, 0) == 0 || errno != ESRCH
}
