import TaskQueueTestSupport
import SpindleProcessWorkers
import SpindleTaskQueue
import Synchronization
import TaskQueueFixtureKinds
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The task queue with workers in child processes (the fixture executable).
@Suite("Process workers", .serialized)
struct ProcessWorkerTests {
    @Test("tasks run in worker processes and feedback arrives in order before the response")
    func roundTripAndFeedback() async throws {
        let h = try await ProcessQueueHarness.make(workers: 1)
        try await h.queue.enqueue(FixtureTask(id: 1, op: .feedback))
        try await h.queue.enqueue(FixtureTask(id: 2))
        #expect(await h.events.wait { $0.contains { if case .answered(2, _) = $0 { true } else { false } } })
        let seen = h.events.events.filter {
            switch $0 { case .feedback(1, _, _), .answered(1, _): true; default: false }
        }
        let pid = h.backend.workerPIDs.values.first ?? -1
        #expect(seen == [.feedback(id: 1, "step 1", pid: nil), .feedback(id: 1, "step 2", pid: nil),
                         .feedback(id: 1, "step 3", pid: nil), .answered(id: 1, pid: pid)])
        #expect(pid != getpid())
        await h.queue.shutdown()
    }

    @Test("broadcast feedback reaches every worker process before its next task")
    func broadcast() async throws {
        let h = try await ProcessQueueHarness.make(workers: 2)
        #expect(await h.waitUntilPoolReady())
        try h.queue.broadcast("epoch 7")
        try await h.queue.enqueue(contentsOf: (1...20).map { FixtureTask(id: $0) })
        await h.queue.join()
        let notes = h.events.events.compactMap { if case .sawBroadcast(let id, let n) = $0 { (id, n) } else { nil } }
        #expect(notes.count == 20)
        #expect(notes.allSatisfy { $0.1 == "epoch 7" })
        await h.queue.shutdown()
    }

    @Test(".end retires the worker process and a fresh one (another pid) replaces it")
    func endReplaces() async throws {
        let h = try await ProcessQueueHarness.make(workers: 1)
        try await h.queue.enqueue(FixtureTask(id: 1, op: .end))
        try await h.queue.enqueue(FixtureTask(id: 2))
        await h.queue.join()
        let pids = h.events.events.compactMap { if case .answered(_, let pid) = $0 { pid } else { nil } }
        #expect(pids.count == 2)
        #expect(pids.first != pids.last, "the task after .end ran in a new process")
        #expect(h.queue.snapshot().workers.first?.id.generation == 1)
        await h.queue.shutdown()
    }

    @Test("cancelling a running task kills its worker process promptly; the pool is back to size")
    func cancelRunning() async throws {
        let h = try await ProcessQueueHarness.make(workers: 2)
        let sw = try await h.queue.enqueue(FixtureTask(id: 1, op: .block))
        #expect(await h.events.wait { $0.contains { if case .feedback(1, "started", _) = $0 { true } else { false } } })
        let victim = h.events.events.compactMap { if case .feedback(1, "started", let pid) = $0 { pid } else { nil } }.first!
        h.queue.cancel(sw)
        #expect(h.events.events.contains(.failed(id: 1, .cancelled)), "reported inside cancel()")
        #expect(await waitFor { !processExists(victim) }, "the worker process was killed and reaped")
        #expect(await h.waitUntilPoolReady())
        #expect(h.queue.snapshot().workers.count == 2)
        #expect(!h.backend.workerPIDs.values.contains(victim))
        try await h.queue.enqueue(contentsOf: (10..<20).map { FixtureTask(id: $0) })
        await h.queue.join()
        #expect(h.queue.snapshot().counters.completed == 10)
        #expect(h.events.events.filter { if case .failed = $0 { true } else { false } }.count == 1)
        await h.queue.shutdown()
    }

    @Test("kill -9 of a worker mid-task reports that task once and loses no queued task")
    func killNine() async throws {
        let h = try await ProcessQueueHarness.make(workers: 2)
        try await h.queue.enqueue(FixtureTask(id: 0, op: .block))
        #expect(await h.events.wait { $0.contains { if case .feedback(0, "started", _) = $0 { true } else { false } } })
        try await h.queue.enqueue(contentsOf: (1...200).map { FixtureTask(id: $0) })
        let victim = h.events.events.compactMap { if case .feedback(0, "started", let pid) = $0 { pid } else { nil } }.first!
        #expect(kill(victim, SIGKILL) == 0)
        #expect(await h.events.wait { $0.contains { if case .failed(0, .workerDied) = $0 { true } else { false } } })
        await h.queue.join()
        let answered = Set(h.events.events.compactMap { if case .answered(let id, _) = $0 { id } else { nil } })
        #expect(answered == Set(1...200))
        let failures = h.events.events.filter { if case .failed = $0 { true } else { false } }
        #expect(failures.count == 1)
        #expect(await h.waitUntilPoolReady())
        await h.queue.shutdown()
    }

    @Test("a worker that crashes between tasks is replaced and reported without a task")
    func crash() async throws {
        let h = try await ProcessQueueHarness.make(workers: 1)
        try await h.queue.enqueue(FixtureTask(id: 1, op: .crash))
        #expect(await h.events.wait { $0.contains { if case .failed(1, .workerDied) = $0 { true } else { false } } })
        try await h.queue.enqueue(FixtureTask(id: 2))
        #expect(await h.events.wait { $0.contains { if case .answered(2, _) = $0 { true } else { false } } })
        await h.queue.shutdown()
    }

    @Test("unencodable responses and requests reach the marshal hook; the worker keeps serving")
    func marshalFailures() async throws {
        let h = try await ProcessQueueHarness.make(workers: 1)
        try await h.queue.enqueue(FixtureTask(id: 1, op: .unencodableResponse))
        try await h.queue.enqueue(FixtureTask(id: 2, nanRequest: true))
        try await h.queue.enqueue(FixtureTask(id: 3))
        await h.queue.join()
        let events = h.events.events
        #expect(events.contains(.marshal(id: 1, .encodeResponse)))
        #expect(events.contains(.marshal(id: 2, .encodeRequest)))
        #expect(events.contains { if case .answered(3, _) = $0 { true } else { false } })
        #expect(h.queue.snapshot().counters.workerDeaths == 0)
        await h.queue.shutdown()
    }

    @Test("shutdown leaves no worker process behind")
    func shutdownReapsChildren() async throws {
        let h = try await ProcessQueueHarness.make(workers: 3, shutdownGrace: .milliseconds(100))
        #expect(await h.waitUntilPoolReady())
        try await h.queue.enqueue(FixtureTask(id: 1, op: .block))
        #expect(await h.events.wait { $0.contains { if case .feedback(1, "started", _) = $0 { true } else { false } } })
        let pids = Array(h.backend.workerPIDs.values)
        #expect(pids.count == 3)
        await h.queue.shutdown()
        #expect(h.backend.unreapedPIDs.isEmpty)
        for pid in pids { #expect(!processExists(pid), "worker \(pid) still exists") }
        #expect(h.events.events.contains(.failed(id: 1, .shutDown)))
    }

    @Test("a kind the executable does not register is refused and its tasks are reported")
    func unknownKind() async throws {
        guard let exe = fixtureExecutable() else { throw FixtureMissing() }
        var backendConfig = ProcessWorkerBackend<UnregisteredKind>.Configuration()
        backendConfig.executable = exe
        let backend = try ProcessWorkerBackend<UnregisteredKind>(configuration: backendConfig)
        let failures = Recorder<TaskFailure>()
        var config = TaskQueue<UnregisteredKind>.Configuration(workers: 1)
        config.maxStartFailures = 2
        let queue = try await TaskQueue(kind: UnregisteredKind(failures: failures), backend: backend, configuration: config)
        try await queue.enqueue(7)
        #expect(await failures.wait { $0.contains { if case .workerDied = $0 { true } else { false } } })
        await queue.shutdown()
    }

    @Test("100 000 tasks through 2 worker processes: every result accounted for")
    func hundredThousand() async throws {
        let h = try await ProcessQueueHarness.make(workers: 2, prefetch: 256)
        let n = 100_000
        let seen = Mutex<[Bool]>(Array(repeating: false, count: n))
        let duplicates = Atomic<Int>(0)
        // Count through a dedicated kind sink would be nicer; the recorder keeps all events.
        try await h.queue.enqueue(contentsOf: (0..<n).map { FixtureTask(id: $0) })
        await h.queue.join()
        for case .answered(let id, _) in h.events.events {
            seen.withLock { s in
                if s[id] { duplicates.add(1, ordering: .relaxed) }
                s[id] = true
            }
        }
        #expect(seen.withLock { $0.allSatisfy { $0 } })
        #expect(duplicates.load(ordering: .relaxed) == 0)
        let counters = h.queue.snapshot().counters
        #expect(counters.completed == n)
        #expect(counters.workerDeaths == 0)
        await h.queue.shutdown()
    }
}

/// A kind the fixture executable does not know.
struct UnregisteredKind: TaskKind {
    typealias Task = Int
    typealias Competence = Int
    typealias Request = Int
    typealias Response = Int
    static var name: String { "not-registered" }
    let failures: Recorder<TaskFailure>
    func request(for task: Int, status: WorkerStatus<Int>) -> Int? { task }
    func use(_ response: Int, for task: Int, status: WorkerStatus<Int>) -> ResponseDecision<Int, Int> { .end }
    func cancelledExpiredOrWorkerDied(_ task: Int?, reason: TaskFailure) { failures.record(reason) }
    static func perform(_ request: Int, context: PerformContext<NoFeedback>) -> Int { request }
}
