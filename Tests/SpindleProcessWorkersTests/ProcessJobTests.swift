import TaskQueueTestSupport
import SpindleEventLoop
import SpindleProcessWorkers
import SpindleTaskQueue
import Synchronization
import TaskQueueFixtureKinds
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The front door on worker processes: ProcessJob, map/results, typed failures across the
/// process boundary, retries, time limits, frame limits, a wrong worker executable.
@Suite("Process jobs and handles", .serialized)
struct ProcessJobTests {
    func processes<Job: ProcessJob>(_ job: Job.Type, maxFrameSize: Int? = nil) throws -> ProcessWorkerBackend<JobKind<Job>>.Configuration {
        guard let exe = fixtureExecutable() else { throw FixtureMissing() }
        var c = ProcessWorkerBackend<JobKind<Job>>.Configuration()
        c.executable = exe
        if let maxFrameSize { c.maxFrameSize = maxFrameSize }
        return c
    }

    func jobQueue<Job: ProcessJob>(_ job: Job.Type, workers: Int = 2, maxFrameSize: Int? = nil,
                                   configure: (inout TaskQueue<JobKind<Job>>.Configuration) -> Void = { _ in })
        async throws -> TaskQueue<JobKind<Job>> {
        var config = TaskQueue<JobKind<Job>>.Configuration()
        configure(&config)
        return try await TaskQueue(processWorkersFor: job, workers: workers, configuration: config,
                                   processes: try processes(job, maxFrameSize: maxFrameSize))
    }

    @Test("the README example runs as a program: 100 squares from 2 worker processes, in order")
    func readmeExample() async throws {
        guard let exe = fixtureExecutable() else { throw FixtureMissing() }
        let loop = try EventLoop(name: "readme-test")
        var options = ProcessOptions(executable: exe, arguments: ["readme-example"])
        options.stdout = .pipe
        let child = try await ChildProcess.spawn(on: loop, options)
        let output = OutputCollector()
        child.stdout?.start(onRead: { output.append($0) }, onClose: { _ in })
        let status = try await within(.seconds(60), "the README example program") { await child.wait() }
        #expect(await waitFor { output.text.contains("\n") })
        #expect(status == .exited(code: 0))
        #expect(output.text == "results 100 ok 100 in-order true sum 338350\n")
        await loop.shutdown()
    }

    @Test("map on process workers: values in input order, computed in other processes")
    func mapOrder() async throws {
        let queue = try await jobQueue(AsyncIncrement.self)
        let answers = try await queue.map(0..<300)
        let values = answers.compactMap { try? $0.get() }
        #expect(values.map(\.value) == Array(1...300))
        #expect(!values.contains { $0.pid == getpid() })
        #expect(Set(values.map(\.pid)).count <= 2)
        await queue.shutdown()
    }

    @Test("results(of:) yields every input exactly once with its result")
    func resultsComplete() async throws {
        let queue = try await jobQueue(Square.self)
        var seen: [Int: Int] = [:]
        for try await (input, result) in queue.results(of: 0..<1_000) {
            #expect(seen[input] == nil)
            seen[input] = try result.get()
        }
        #expect(seen.count == 1_000)
        #expect(seen.allSatisfy { $0.value == $0.key * $0.key })
        await queue.shutdown()
    }

    @Test("a thrown Codable error the kind lists crosses the process boundary as itself; others as RemoteTaskError")
    func thrownErrors() async throws {
        let h = try await ProcessQueueHarness.make(workers: 1)
        let listed = try await h.queue.enqueue(FixtureTask(id: 7, op: .throwListed))
        let unlisted = try await h.queue.enqueue(FixtureTask(id: 8, op: .throwUnlisted))
        let fine = try await h.queue.enqueue(FixtureTask(id: 9, op: .asyncEcho))
        guard case .failure(.failed(let error)) = await listed.result, let typed = error as? FixtureError else {
            Issue.record("expected .failed(FixtureError), got \(await listed.result)")
            return
        }
        #expect(typed.code == 7)
        #expect(typed.note.hasPrefix("thrown in "), "the worker's own value came back: \(typed.note)")
        guard case .failure(.failed(let other)) = await unlisted.result, let remote = other as? RemoteTaskError else {
            Issue.record("expected .failed(RemoteTaskError), got \(await unlisted.result)")
            return
        }
        #expect(remote.typeName == "TaskQueueFixtureKinds.UnlistedFixtureError")
        #expect(remote.detail == "an unlisted fixture error")
        #expect(try await fine.value.value == 2, "the async perform answered")
        #expect(h.queue.snapshot().counters.workerDeaths == 0)
        await h.queue.shutdown()
    }

    @Test("a marshal failure in each direction fails that handle, names the direction, and the worker keeps serving")
    func marshalDirections() async throws {
        let h = try await ProcessQueueHarness.make(workers: 1)
        let cases: [(FixtureTask, MarshalError.Direction)] = [
            (FixtureTask(id: 1, nanRequest: true), .encodeRequest),
            (FixtureTask(id: 2, op: .poisonRequest), .decodeRequest),
            (FixtureTask(id: 3, op: .unencodableResponse), .encodeResponse),
            (FixtureTask(id: 4, op: .poisonResponse), .decodeResponse),
        ]
        for (task, direction) in cases {
            let handle = try await h.queue.enqueue(task)
            guard case .failure(.marshalFailed(let got, let text)) = await handle.result else {
                Issue.record("task \(task) did not fail with a marshal failure: \(await handle.result)")
                continue
            }
            #expect(got == direction, "task \(task)")
            #expect(text.contains("fixture"), "names the kind: \(text)")
            #expect(h.events.events.contains(.marshal(id: task.id, direction)), "the reference hook ran too")
        }
        #expect(try await h.queue.enqueue(FixtureTask(id: 5)).value.id == 5)
        #expect(h.queue.snapshot().counters.workerDeaths == 0)
        await h.queue.shutdown()
    }

    @Test("an oversize response is a marshal failure (frame limits agree), not a worker death")
    func oversizeResponse() async throws {
        let queue = try await jobQueue(Payload.self, workers: 1, maxFrameSize: 64 << 10)
        let big = try await queue.enqueue(100_000)
        guard case .failure(.marshalFailed(.encodeResponse, let text)) = await big.result else {
            Issue.record("expected an encodeResponse marshal failure, got \(await big.result)")
            return
        }
        #expect(text.contains("does not fit the frame limit of 65536 bytes"))
        #expect(try await queue.enqueue(10).value == String(repeating: "x", count: 10))
        #expect(queue.snapshot().counters.workerDeaths == 0)
        await queue.shutdown()
    }

    @Test("a worker that dies on every attempt: .workerDied after 1 + retries attempts")
    func workerDiedAfterRetries() async throws {
        let h = try await ProcessQueueHarness.make(workers: 1)
        let handle = try await h.queue.enqueue(FixtureTask(id: 1, op: .crash),
                                               options: .init(retries: 2, retryBackoff: .milliseconds(5)))
        let result = try await within(.seconds(60), "three crashing attempts") { await handle.result }
        guard case .failure(.workerDied(let attempts, let last)) = result else {
            Issue.record("expected .workerDied, got \(result)")
            return
        }
        #expect(attempts == 3)
        #expect(last.contains("exited with code 9"), "\(last)")
        #expect(h.queue.snapshot().counters.retried == 2)
        #expect(try await h.queue.enqueue(FixtureTask(id: 2)).value.id == 2)
        await h.queue.shutdown()
    }

    @Test("a retryable error thrown in a worker process is retried until it succeeds")
    func retryableAcrossProcesses() async throws {
        let queue = try await jobQueue(Flaky.self, workers: 1)
        let ok = try await queue.enqueue(Flaky.Input(key: 1, failures: 2), options: .init(retries: 3, retryBackoff: .milliseconds(1)))
        #expect(try await ok.value == 3)
        let out = try await queue.enqueue(Flaky.Input(key: 2, failures: 5), options: .init(retries: 1, retryBackoff: .zero))
        #expect(await out.result == .failure(.failed(FlakyError(attempt: 2))))
        await queue.shutdown()
    }

    @Test("time limit on a process worker: a task ignoring it is killed after the grace, .timedOut")
    func timeLimitProcess() async throws {
        let queue = try await jobQueue(Spin.self, workers: 1) { $0.timeLimitGrace = .milliseconds(50) }
        let limit = Duration.milliseconds(100)
        let stubborn = try await queue.enqueue(60_000, options: .init(timeLimit: limit))
        let result = try await within(.seconds(20), "a spinning job past its limit") { await stubborn.result }
        #expect(result == .failure(.timedOut(limit: limit)))
        let next = try await queue.enqueue(1)
        #expect(try await next.value != getpid())
        #expect(queue.snapshot().workers[0].id.generation == 1, "its worker process was killed and replaced")
        await queue.shutdown()
    }

    @Test("cancelling a prefetched task withdraws it; the running task and its worker are untouched")
    func cancelPrefetched() async throws {
        let queue = try await jobQueue(Spin.self, workers: 1) { $0.prefetch = 4 }
        let handles = try await queue.map([300, 1, 1, 1].map { $0 }) // warm-up: one batch, same worker
        let pid = try handles[0].get()
        #expect(handles.allSatisfy { (try? $0.get()) == pid })
        let running = try await queue.enqueue(300)
        let behind = try await queue.enqueue(1)
        let victim = try await queue.enqueue(1)
        #expect(await waitFor { queue.snapshot().workers[0].state == .busy(task: "Spin(300)", inFlight: 3) })
        victim.cancel()
        #expect(victim.currentResult == .failure(.cancelled))
        #expect(try await running.value == pid)
        #expect(try await behind.value == pid)
        let counters = queue.snapshot().counters
        #expect(counters.withdrawn == 1)
        #expect(counters.workerDeaths == 0)
        #expect(counters.requeued == 0, "nothing was run twice")
        #expect(queue.snapshot().workers[0].id.generation == 0)
        await queue.shutdown()
    }

    @Test("maxTasksPerWorker recycles worker processes")
    func recycleProcesses() async throws {
        let queue = try await jobQueue(AsyncIncrement.self, workers: 1) { $0.maxTasksPerWorker = 10 }
        let answers = try await queue.map(0..<35).compactMap { try? $0.get() }
        #expect(answers.count == 35)
        #expect(Set(answers.map(\.pid)).count == 4, "35 tasks, 10 per process")
        await queue.shutdown()
    }

    @Test("a wrong worker executable: enqueue fails at once naming the cause; join returns")
    func wrongExecutable() async throws {
        var processes = ProcessWorkerBackend<JobKind<Square>>.Configuration()
        processes.executable = "/bin/false"
        var config = TaskQueue<JobKind<Square>>.Configuration()
        config.restartBackoff = .seconds(30)
        let queue = try await TaskQueue(processWorkersFor: Square.self, workers: 2, configuration: config,
                                        processes: processes)
        let first = try await queue.enqueue(3)
        let result = try await within(.seconds(30), "the first task's failure") { await first.result }
        guard case .failure(.noWorker(let cause)) = result else {
            Issue.record("expected .noWorker, got \(result)")
            return
        }
        #expect(cause.contains("exited with code 1"), "\(cause)")
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: TaskQueueError.noWorkerCanStart(cause: cause)) {
            _ = try await queue.enqueue(4)
        }
        await #expect(throws: TaskQueueError.noWorkerCanStart(cause: cause)) {
            _ = try await queue.map(1...3)
        }
        #expect(clock.now - start < .seconds(1), "refused at once")
        _ = try await within(.seconds(10), "join on a queue with no worker") { await queue.join() }
        #expect(queue.snapshot().noWorkerCause == cause)
        await queue.shutdown()
    }

    @Test("broadcast failures are reported: encoding throws at the master, decoding reaches the hook")
    func broadcastFailures() async throws {
        guard let exe = fixtureExecutable() else { throw FixtureMissing() }
        var processes = ProcessWorkerBackend<NoteKind>.Configuration()
        processes.executable = exe
        let failures = Recorder<MarshalError.Direction>()
        let queue = try await TaskQueue(kind: NoteKind { error, _ in failures.record(error.direction) },
                                        backend: try ProcessWorkerBackend<NoteKind>(configuration: processes),
                                        configuration: .init(workers: 1))
        #expect(try await queue.enqueue(1).value == "")
        #expect(throws: MarshalError.self) { try queue.broadcast(Note(text: "nan", weight: .nan)) }
        try queue.broadcast(Note(text: "poison"))
        #expect(await failures.wait { $0 == [.decodeBroadcast] })
        try queue.broadcast(Note(text: "hello"))
        #expect(try await queue.enqueue(2).value == "hello", "the worker kept serving")
        #expect(queue.snapshot().counters.broadcastFailures == 2)
        await queue.shutdown()
    }
}

/// Bytes a child wrote, as text.
final class OutputCollector: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ raw: UnsafeRawBufferPointer) { bytes.withLock { $0.append(contentsOf: raw) } }
    var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
}
