import TaskQueueTestSupport
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleTaskQueue

/// The TaskQueue shell with in-process thread workers.
@Suite("TaskQueue on thread workers")
struct ThreadQueueTests {
    let recorder = Recorder<ScriptEvent>()

    func makeQueue(workers: Int = 2, prefetch: Int = 1, limit: Int = 1 << 20,
                   tokens: ExecutionTokens? = nil) async throws -> (TaskQueue<ScriptKind>, ThreadWorkerBackend<ScriptKind>) {
        var config = TaskQueue<ScriptKind>.Configuration(workers: workers)
        config.prefetch = prefetch
        config.limit = limit
        config.tokens = tokens
        config.shutdownGrace = .seconds(5)
        let backend = ThreadWorkerBackend<ScriptKind>()
        let queue = try await TaskQueue(kind: ScriptKind(recorder: recorder), backend: backend, configuration: config)
        return (queue, backend)
    }

    @Test("every task of 20 000 is answered exactly once, with prefetch")
    func manyTasks() async throws {
        let (queue, backend) = try await makeQueue(workers: 2, prefetch: 64)
        let tasks = (0..<20_000).map { ScriptTask(name: "t\($0)") }
        try await queue.enqueue(contentsOf: tasks)
        await queue.join()
        let used = recorder.events.compactMap { if case .used(let n, _) = $0 { n } else { nil } }
        #expect(used.count == 20_000)
        #expect(Set(used).count == 20_000)
        #expect(queue.snapshot().counters.completed == 20_000)
        await queue.shutdown()
        #expect(backend.liveThreadCount == 0)
    }

    @Test("an unusable configuration is refused with the field named")
    func invalidConfiguration() async {
        var config = TaskQueue<ScriptKind>.Configuration(workers: 0)
        await #expect(throws: TaskQueueError.invalidConfiguration("workers must be at least 1, got 0")) {
            _ = try await TaskQueue(kind: ScriptKind(recorder: recorder), configuration: config)
        }
        config.workers = 1
        config.prefetch = 0
        await #expect(throws: TaskQueueError.invalidConfiguration("prefetch must be at least 1, got 0")) {
            _ = try await TaskQueue(kind: ScriptKind(recorder: recorder), configuration: config)
        }
    }

    @Test("join on an idle queue returns at once")
    func joinEmpty() async throws {
        let (queue, _) = try await makeQueue()
        await queue.join()
        #expect(queue.snapshot().queued == 0)
        await queue.shutdown()
    }

    @Test("feedback emitted during a task reaches the master in order, before the response")
    func feedbackOrder() async throws {
        let (queue, _) = try await makeQueue(workers: 1)
        try await queue.enqueue(ScriptTask(name: "fb-a"))
        try await queue.enqueue(ScriptTask(name: "fb-b"))
        await queue.join()
        let events = recorder.events.filter {
            switch $0 { case .feedback, .used: true; default: false }
        }
        #expect(events == [
            .feedback("fb-a", "fb-a#1"), .feedback("fb-a", "fb-a#2"), .feedback("fb-a", "fb-a#3"),
            .used("fb-a", competence: 0),
            .feedback("fb-b", "fb-b#1"), .feedback("fb-b", "fb-b#2"), .feedback("fb-b", "fb-b#3"),
            .used("fb-b", competence: 1),
        ])
        await queue.shutdown()
    }

    @Test("cancelling a running thread task reports it, abandons the worker and keeps the pool size")
    func cancelRunning() async throws {
        let (queue, backend) = try await makeQueue(workers: 1)
        let sw = try await queue.enqueue(ScriptTask(name: "block-1"))
        try await queue.enqueue(ScriptTask(name: "after"))
        #expect(await waitFor { queue.snapshot().workers.first?.state == .busy(task: "block-1", inFlight: 1) })
        queue.cancel(sw)
        // Reported before cancel() returns: the 50 ms promise holds by construction.
        #expect(recorder.events.contains(.failed("block-1", .cancelled)))
        #expect(await recorder.wait { $0.contains(.used("after", competence: 0)) }, "the replacement ran the next task")
        await queue.join()
        let snap = queue.snapshot()
        #expect(snap.workers.count == 1)
        #expect(snap.workers[0].id.generation == 1)
        #expect(snap.workers[0].state == .idle)
        #expect(!recorder.events.contains(.used("block-1", competence: 0)), "the abandoned result is discarded")
        await queue.shutdown()
        #expect(backend.liveThreadCount == 0)
    }

    @Test("broadcast reaches every live worker")
    func broadcast() async throws {
        let (queue, _) = try await makeQueue(workers: 3)
        let before = ScriptProbe.broadcasts.load(ordering: .relaxed)
        // Wait until all three are started so all three receive it.
        #expect(await waitFor { queue.snapshot().workers.allSatisfy { $0.state == .idle } })
        try queue.broadcast("hello")
        #expect(await waitFor { ScriptProbe.broadcasts.load(ordering: .relaxed) - before >= 3 })
        await queue.shutdown()
    }

    @Test("a full queue makes tryEnqueue throw and enqueue wait for room (or give up when cancelled)")
    func backpressure() async throws {
        ScriptProbe.holdRelease.store(false, ordering: .releasing)
        let (queue, _) = try await makeQueue(workers: 1, limit: 2)
        try await queue.enqueue(ScriptTask(name: "hold"))
        #expect(await waitFor { ScriptProbe.holdRunning.load(ordering: .relaxed) == 1 })
        try queue.tryEnqueue(ScriptTask(name: "q1"))
        try queue.tryEnqueue(ScriptTask(name: "q2"))
        #expect(throws: TaskQueueError.full(limit: 2)) { try queue.tryEnqueue(ScriptTask(name: "q3")) }
        let abandoned = Task { try await queue.enqueue(ScriptTask(name: "never")) }
        abandoned.cancel()
        await #expect(throws: TaskQueueError.cancelledWhileWaiting(accepted: 0)) { try await abandoned.value }
        let waiter = Task { try await queue.enqueue(ScriptTask(name: "q3")) }
        ScriptProbe.holdRelease.store(true, ordering: .releasing)
        _ = try await waiter.value
        await queue.join()
        #expect(queue.snapshot().counters.completed == 4)
        await queue.shutdown()
    }

    @Test("a queued task whose deadline passes is reported expired by the queue's own checks")
    func deadlineExpiry() async throws {
        let clock = ManualClock()
        var config = TaskQueue<ScriptKind>.Configuration(workers: 1)
        config.clock = clock
        config.deadlineCheckInterval = .milliseconds(5)
        let queue = try await TaskQueue(kind: ScriptKind(recorder: recorder), configuration: config)
        let hold = try await queue.enqueue(ScriptTask(name: "block-deadline"))
        #expect(await waitFor { queue.snapshot().workers.first?.state == .busy(task: "block-deadline", inFlight: 1) })
        try await queue.enqueue(ScriptTask(name: "late"), deadline: clock.now() + .milliseconds(10))
        #expect(queue.snapshot().queued == 1)
        clock.advance(by: .milliseconds(20))
        #expect(await recorder.wait { $0.contains(.failed("late", .expired)) })
        #expect(queue.snapshot().queued == 0)
        queue.cancel(hold)
        await queue.shutdown()
    }

    @Test("shutdown reports queued tasks, refuses new ones and leaves no thread")
    func shutdown() async throws {
        let (queue, backend) = try await makeQueue(workers: 2)
        await queue.shutdown()
        #expect(backend.liveThreadCount == 0)
        await #expect(throws: TaskQueueError.shutDown(kind: ScriptKind.name)) {
            try await queue.enqueue(ScriptTask(name: "late"))
        }
    }

    @Test("execution tokens shared by two queues cap how many workers run at once")
    func tokens() async throws {
        let tokens = ExecutionTokens(limit: 1)
        let (a, _) = try await makeQueue(workers: 2, tokens: tokens)
        let (b, _) = try await makeQueue(workers: 2, tokens: tokens)
        try await a.enqueue(contentsOf: (0..<200).map { ScriptTask(name: "conc-a\($0)") })
        try await b.enqueue(contentsOf: (0..<200).map { ScriptTask(name: "conc-b\($0)") })
        await a.join()
        await b.join()
        #expect(a.snapshot().counters.completed == 200)
        #expect(b.snapshot().counters.completed == 200)
        #expect(ScriptProbe.maxConcurrent.load(ordering: .relaxed) == 1, "never two tasks at once across both queues")
        #expect(tokens.available == 1, "every token came back")
        await a.shutdown()
        await b.shutdown()
    }

    @Test("execution tokens serve high-priority waiters first")
    func tokenPriority() async throws {
        let tokens = ExecutionTokens(limit: 1)
        #expect(tokens.tryAcquire())
        let order = Recorder<String>()
        _ = tokens.acquire(priority: .low) { order.record("low") }
        _ = tokens.acquire(priority: .high) { order.record("high") }
        tokens.release()
        tokens.release()
        #expect(order.events == ["high", "low"])
        tokens.release()
        #expect(tokens.available == 1)
    }
}

/// Waits until `condition` holds, re-checking every millisecond; false after `timeout`.
/// For conditions with no event to wait on (counters moved by worker threads).
func waitFor(timeout: Duration = .seconds(20), _ condition: @Sendable () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let until = clock.now + timeout
    while clock.now < until {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return condition()
}
