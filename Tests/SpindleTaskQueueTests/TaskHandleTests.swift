import TaskQueueTestSupport
import SpindleKernel
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SpindleTaskQueue

/// The front door on thread workers: handles, every failure a handle can carry, retries,
/// time limits, `map`, `results(of:)`, and the races the issue listed.
@Suite("Task handles on thread workers")
struct TaskHandleTests {
    let recorder = Recorder<ScriptEvent>()

    func scriptQueue(workers: Int = 1, configure: (inout TaskQueue<ScriptKind>.Configuration) -> Void = { _ in })
        async throws -> (TaskQueue<ScriptKind>, ThreadWorkerBackend<ScriptKind>) {
        var config = TaskQueue<ScriptKind>.Configuration(workers: workers)
        config.shutdownGrace = .seconds(5)
        configure(&config)
        let backend = ThreadWorkerBackend<ScriptKind>()
        return (try await TaskQueue(kind: ScriptKind(recorder: recorder), backend: backend, configuration: config), backend)
    }

    func closureQueue(workers: Int = 1, configure: (inout TaskQueue<ClosureKind>.Configuration) -> Void = { _ in })
        async throws -> (TaskQueue<ClosureKind>, ThreadWorkerBackend<ClosureKind>) {
        var config = TaskQueue<ClosureKind>.Configuration(workers: workers)
        configure(&config)
        let backend = ThreadWorkerBackend<ClosureKind>(joinTimeout: .seconds(5))
        return (try await TaskQueue(kind: ClosureKind(), backend: backend, configuration: config), backend)
    }

    @Test("a handle gives the task's value; the reference hook `use` still ran")
    func value() async throws {
        let (queue, _) = try await scriptQueue()
        let handle = try await queue.enqueue(ScriptTask(name: "answer"))
        #expect(try await handle.value == "answer")
        #expect(recorder.events.contains(.used("answer", competence: 0)))
        #expect(handle.currentResult == .success("answer"))
        await queue.shutdown()
    }

    @Test("closures: sync and async bodies, typed values")
    func closures() async throws {
        let queue = try await TaskQueue(threads: 2)
        let six = try await queue.submit { 6 * 7 }
        let text = try await queue.submit { () async throws -> String in
            try await Task.sleep(for: .milliseconds(1))
            return "async"
        }
        #expect(try await six.value == 42)
        #expect(try await text.value == "async")
        await queue.shutdown()
    }

    @Test("cancel: a running task's handle fails .cancelled and its worker is replaced")
    func cancelRunning() async throws {
        let (queue, _) = try await scriptQueue()
        let handle = try await queue.enqueue(ScriptTask(name: "block-cancel"))
        #expect(await waitFor { queue.snapshot().workers.first?.state == .busy(task: "block-cancel", inFlight: 1) })
        handle.cancel()
        #expect(handle.currentResult == .failure(.cancelled), "decided before cancel() returns")
        #expect(await handle.result == .failure(.cancelled))
        #expect(recorder.events.contains(.failed("block-cancel", .cancelled)), "the reference hook ran too")
        let after = try await queue.enqueue(ScriptTask(name: "after"))
        #expect(try await after.value == "after")
        #expect(queue.snapshot().workers[0].id.generation == 1)
        await queue.shutdown()
    }

    @Test("expiry: a task whose timeout passes before it starts fails .expired")
    func expired() async throws {
        let (queue, _) = try await scriptQueue()
        let handle = try await queue.enqueue(ScriptTask(name: "late"), options: .init(timeout: .zero))
        #expect(await handle.result == .failure(.expired))
        await queue.shutdown()
    }

    @Test("time limit, cooperative: the flag goes up, perform returns, .timedOut; the worker stays")
    func timeLimitCooperative() async throws {
        let (queue, _) = try await scriptQueue { $0.timeLimitGrace = .seconds(10) }
        let limit = Duration.milliseconds(30)
        let handle = try await queue.enqueue(ScriptTask(name: "block-limit"), options: .init(timeLimit: limit))
        let result = try await within(.seconds(10), "a cooperative task past its limit") { await handle.result }
        #expect(result == .failure(.timedOut(limit: limit)))
        #expect(queue.snapshot().workers[0].id.generation == 0, "it answered within the grace: not killed")
        #expect(queue.snapshot().counters.timedOut == 1)
        #expect(try await queue.enqueue(ScriptTask(name: "next")).value == "next")
        await queue.shutdown()
    }

    @Test("time limit, flag ignored: after the grace the worker is abandoned and replaced, .timedOut")
    func timeLimitIgnored() async throws {
        let release = Flag()
        let (queue, backend) = try await closureQueue { $0.timeLimitGrace = .milliseconds(30) }
        let limit = Duration.milliseconds(30)
        let stubborn = try await queue.submit(options: .init(timeLimit: limit)) { () -> Int in
            while !release.isSet { sched_yield() }   // never looks at its cancel flag (yields: other tests run beside it)
            return 1
        }
        let result = try await within(.seconds(10), "a task ignoring its flag") { await stubborn.result }
        #expect(result == .failure(.timedOut(limit: limit)))
        #expect(queue.snapshot().workers[0].id.generation == 1, "its worker was abandoned and replaced")
        #expect(try await queue.submit { 5 }.value == 5, "the replacement serves")
        release.set()
        await queue.shutdown()
        #expect(backend.detachedThreadCount == 0, "the abandoned thread ended once its closure returned")
    }

    struct Oops: Error, Equatable { var code: Int }
    struct Again: RetryableError {}

    @Test("a thrown error reaches the handle as itself; join's counters count it")
    func failed() async throws {
        let (queue, _) = try await closureQueue()
        let handle = try await queue.submit { () throws -> Int in throw Oops(code: 3) }
        let result = await handle.result
        #expect(result == .failure(.failed(Oops(code: 3))))
        guard case .failure(let failure) = result else { return }
        #expect(failure.error as? Oops == Oops(code: 3))
        #expect(await queue.join().failed == 1)
        await queue.shutdown()
    }

    @Test("retries: a retryable error is retried with backoff; others are not")
    func retries() async throws {
        let (queue, _) = try await closureQueue()
        let attempts = Counter()
        let flaky = try await queue.submit(options: .init(retries: 2, retryBackoff: .milliseconds(1))) { () throws -> Int in
            let n = attempts.increment()
            if n < 3 { throw Again() }
            return n
        }
        #expect(try await within(.seconds(10), "retries") { try await flaky.value } == 3)
        let tooFew = Counter()
        let exhausted = try await queue.submit(options: .init(retries: 1, retryBackoff: .zero)) { () throws -> Int in
            tooFew.increment()
            throw Again()
        }
        #expect(await exhausted.result == .failure(.failed(Again())))
        #expect(tooFew.value == 2, "one attempt and one retry")
        let plain = Counter()
        let notRetryable = try await queue.submit(options: .init(retries: 5)) { () throws -> Int in
            plain.increment()
            throw Oops(code: 1)
        }
        #expect(await notRetryable.result == .failure(.failed(Oops(code: 1))))
        #expect(plain.value == 1)
        #expect(queue.snapshot().counters.retried == 3)
        await queue.shutdown()
    }

    @Test("shutdown fails queued and running tasks' handles with .shutDown")
    func shutDown() async throws {
        let (queue, _) = try await scriptQueue { $0.shutdownGrace = .milliseconds(20) }
        let running = try await queue.enqueue(ScriptTask(name: "block-shutdown"))
        let queued = try await queue.enqueue(ScriptTask(name: "never"))
        #expect(await waitFor { queue.snapshot().workers.first?.state == .busy(task: "block-shutdown", inFlight: 1) })
        await queue.shutdown()
        #expect(await queued.result == .failure(.shutDown))
        #expect(await running.result == .failure(.shutDown))
    }

    @Test("map returns results in input order; results(of:) yields every input once")
    func mapAndResults() async throws {
        let (queue, _) = try await scriptQueue(workers: 2) { $0.prefetch = 8 }
        let tasks = (0..<500).map { ScriptTask(name: "m\($0)") }
        let mapped = try await queue.map(tasks)
        #expect(mapped == tasks.map { .success($0.name) })
        var seen: [String: Result<String, TaskFailure>] = [:]
        for try await (input, result) in queue.results(of: tasks) {
            #expect(seen[input.name] == nil, "each input once")
            seen[input.name] = result
        }
        #expect(seen.count == tasks.count)
        #expect(seen.allSatisfy { $0.value == .success($0.key) })
        let closures = try await TaskQueue(threads: 2)
        let doubled = try await closures.map(0..<1_000) { $0 * 2 }
        #expect(doubled.map { try? $0.get() } == (0..<1_000).map { $0 * 2 })
        await closures.shutdown()
        await queue.shutdown()
    }

    @Test("leaving a results(of:) loop early cancels the tasks not finished")
    func resultsBreakCancels() async throws {
        let (queue, _) = try await scriptQueue(workers: 1)
        let tasks = [ScriptTask(name: "first")] + (0..<20).map { ScriptTask(name: "block-rest\($0)") }
        for try await (input, _) in queue.results(of: tasks) {
            #expect(input.name == "first")
            break
        }
        let drained = try await within(.seconds(10), "join after the loop ended") { await queue.join() }
        #expect(drained.cancelled == 20)
        await queue.shutdown()
    }

    @Test("use runs outside the scheduler's lock: it may call the queue")
    func useMayCallTheQueue() async throws {
        let box = QueueBox()
        let queue = try await TaskQueue(kind: ReentrantKind(box: box), configuration: .init(workers: 2))
        box.queue.withLock { $0 = queue }
        let first = try await queue.enqueue(1)
        #expect(try await first.value == 1)
        let drained = try await within(.seconds(10), "join after use enqueued from inside") { await queue.join() }
        #expect(drained.completed == 2, "use enqueued a follow-up through the queue")
        #expect(box.followUp.load(ordering: .relaxed) == 1)
        box.queue.withLock { $0 = nil }
        await queue.shutdown()
    }

    @Test("maxTasksPerWorker recycles the worker after that many answers")
    func maxTasksPerWorker() async throws {
        let (queue, _) = try await scriptQueue { $0.maxTasksPerWorker = 3; $0.prefetch = 4 }
        let results = try await queue.map((0..<10).map { ScriptTask(name: "r\($0)") })
        #expect(results.allSatisfy { (try? $0.get()) != nil })
        #expect(await waitFor { queue.snapshot().workers[0].id.generation == 3 })
        #expect(queue.snapshot().counters.workersRetired == 3)
        await queue.shutdown()
    }

    @Test("shutdown racing enqueue, 1 000 times, never hangs; every accepted handle is decided")
    func shutdownRacesEnqueue() async throws {
        try await within(.seconds(120), "1 000 shutdown/enqueue races") {
            for round in 0..<1_000 {
                var config = TaskQueue<ClosureKind>.Configuration(workers: 1)
                config.shutdownGrace = .milliseconds(50)
                config.deadlineCheckInterval = .milliseconds(1)
                let queue = try await TaskQueue(kind: ClosureKind(), configuration: config)
                async let submitted: TaskHandle<Int>? = try? await queue.submit(options: .init(timeout: .seconds(30))) { round }
                async let stopped: Void = queue.shutdown()
                let handle = await submitted
                await stopped
                if let handle {
                    let outcome = await handle.result
                    #expect(outcome == .success(round) || outcome == .failure(.shutDown))
                }
            }
        }
    }

    @Test("execution tokens under 1 000 cancel/grant races never exceed the limit")
    func tokenRaces() async throws {
        let tokens = ExecutionTokens(limit: 1)
        var config = TaskQueue<ClosureKind>.Configuration(workers: 2)
        config.tokens = tokens
        let a = try await TaskQueue(kind: ClosureKind(), configuration: config)
        let b = try await TaskQueue(kind: ClosureKind(), configuration: config)
        let probe = ConcurrencyProbe()
        @Sendable func work() -> Int { probe.run { for _ in 0..<200 { _ = probe.current } } }
        try await within(.seconds(120), "1 000 cancel/grant rounds") {
            for round in 0..<1_000 {
                let x = try await a.submit { work() }
                let y = try await b.submit { work() }
                // Cancel one while it most likely waits for the token the other holds.
                if round % 2 == 0 { x.cancel() } else { y.cancel() }
                _ = await x.result
                _ = await y.result
            }
            await a.join()
            await b.join()
        }
        await a.shutdown()
        await b.shutdown()
        #expect(probe.most == 1, "never two tasks at once across both queues")
        #expect(tokens.extremes.most <= 1, "never more tokens out than the limit")
        #expect(tokens.extremes.fewest >= 0, "no token was given back twice")
        #expect(tokens.inUse == 0)
        #expect(tokens.available == 1)
    }
}

/// A kind whose `use` enqueues a follow-up through the queue itself (it must not deadlock).
struct ReentrantKind: TaskKind {
    typealias Task = Int
    typealias Competence = Int
    typealias Request = Int
    typealias Response = Int

    let box: QueueBox

    func request(for task: Int, status: WorkerStatus<Int>) -> Int? { task }
    func use(_ response: Int, for task: Int, status: WorkerStatus<Int>) -> ResponseDecision<Int, Int> {
        if task == 1, let queue = box.queue.withLock({ $0 }) {
            _ = try? queue.tryEnqueue(2)
            box.followUp.add(1, ordering: .relaxed)
        }
        return .stay(0, inject: [])
    }
    func cancelledExpiredOrWorkerDied(_ task: Int?, reason: TaskFailure) {}
    static func perform(_ request: Int, context: PerformContext<NoFeedback>) -> Int { request }
}

final class QueueBox: Sendable {
    let queue = Mutex<TaskQueue<ReentrantKind>?>(nil)
    let followUp = Atomic<Int>(0)
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    @discardableResult
    func increment() -> Int { count.add(1, ordering: .relaxed).newValue }
    var value: Int { count.load(ordering: .relaxed) }
}

final class Flag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

/// Counts how many bodies run at once, and the most ever.
final class ConcurrencyProbe: Sendable {
    private let running = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    var current: Int { running.load(ordering: .relaxed) }
    var most: Int { peak.load(ordering: .relaxed) }

    func run(_ body: () -> Void) -> Int {
        let now = running.add(1, ordering: .acquiringAndReleasing).newValue
        var seen = peak.load(ordering: .relaxed)
        while now > seen {
            let (done, actual) = peak.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if done { break }
            seen = actual
        }
        body()
        running.subtract(1, ordering: .acquiringAndReleasing)
        return now
    }
}
