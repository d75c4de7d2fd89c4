// The `actors` suite: distributed actor calls (SpindleActors) in process and over TCP
// loopback, beside the raw ping-pong of the same transport measured in the same run.
import Distributed
import Spindle
import Synchronization

private let sequentialCalls = 5_000
private let concurrentCalls = 64_000
private let concurrentCallers = 64
private let rounds = 5

/// The benchmark's actor: one `Int` in, one `Int` out.
private distributed actor BenchEcho {
    typealias ActorSystem = SpindleActorSystem
    distributed func next(_ x: Int) -> Int { x &+ 1 }
}

let actorsSuite = BenchSuite(name: "actors") { reporter in
    try await runInProcessActorBenchmark(reporter)
    try await runTCPActorBenchmarks(reporter)
}

// MARK: in process

private func runInProcessActorBenchmark(_ reporter: BenchReporter) async throws {
    let transport = InProcessTransport()
    // Baseline: raw in-process ping-pong, each reply sent from the echo's handler.
    let listener = try await transport.listen(on: .inproc(name: "bench-actors-echo")) { conn in
        conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
    }
    let conn = try await transport.connect(to: listener.address)
    let pingPong = PingPong()
    conn.start(ConnectionHandler(onEnvelope: { _ in pingPong.pong() }, onClose: { pingPong.fail(TransportError.closed($0)) }))
    pingPong.setSender { try conn.send($0) }

    let server = try await SpindleActorSystem(transport: transport, configuration: quiet(.init(listenAddress: .inproc(name: "bench-actors"))))
    let client = try await SpindleActorSystem(transport: transport, configuration: quiet(.init()))
    let echo = BenchEcho(actorSystem: server)
    let ref = try BenchEcho.resolve(id: echo.id, using: client)
    reporter.note("in-process: \(sequentialCalls) sequential calls of BenchEcho.next(Int) -> Int between two systems on one InProcessTransport (asynchronous delivery); baseline: raw ping-pong of 64 B envelopes on the same transport")
    let (raw, calls) = try await interleaved(iterations: sequentialCalls,
        baseline: { n in try await pingPong.run(n) },
        spindle: { n in try await callSequentially(n, ref) })
    reporter.report(BenchResult(suite: "actors", benchmark: "actor call Int→Int, in-process", value: 1 / calls,
                                unit: "calls/s", baseline: "in-process ping-pong", baselineValue: 1 / raw, higherIsBetter: true))
    await client.shutdown()
    await server.shutdown()
    await transport.shutdown()
    withExtendedLifetime(echo) {}
}

// MARK: TCP loopback

private func runTCPActorBenchmarks(_ reporter: BenchReporter) async throws {
    let serverLoop = try EventLoop(name: "bench-actor-server")
    let clientLoop = try EventLoop(name: "bench-actor-client")
    let serverTCP = TCPTransport(loop: serverLoop)
    let clientTCP = TCPTransport(loop: clientLoop)
    let serverExecutor = LoopExecutor(serverLoop)
    let clientExecutor = LoopExecutor(clientLoop)

    // Baseline: the transport suite's raw TCP ping-pong (64 B, the echo replies from its
    // handler on the server loop, the next ping leaves from the client's handler).
    let echoListener = try await serverTCP.listen(on: .tcp(host: "127.0.0.1", port: 0)) { conn in
        conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
    }
    let conn = try await clientTCP.connect(to: echoListener.address)
    let pingPong = PingPong()
    conn.start(ConnectionHandler(onEnvelope: { _ in pingPong.pong() }, onClose: { pingPong.fail(TransportError.closed($0)) }))
    pingPong.setSender { try conn.send($0) }

    // Calls run on the server loop (the system's executor) and callers on the client loop
    // (a task executor preference): docs/actors.md, "Performance".
    var serverConfig = quiet(.init(listenAddress: .tcp(host: "127.0.0.1", port: 0)))
    serverConfig.executor = serverExecutor
    serverConfig.startsCallsImmediately = true
    let server = try await SpindleActorSystem(transport: serverTCP, configuration: serverConfig)
    let client = try await SpindleActorSystem(transport: clientTCP, configuration: quiet(.init()))
    let echo = BenchEcho(actorSystem: server)
    let ref = try BenchEcho.resolve(id: echo.id, using: client)

    reporter.note("tcp loopback: \(sequentialCalls) sequential calls, caller on the client loop, calls run on the server loop; baseline: raw SpindleTCP ping-pong, 64 B")
    let (raw, calls) = try await interleaved(iterations: sequentialCalls,
        baseline: { n in try await pingPong.run(n) },
        spindle: { n in
            try await withTaskExecutorPreference(clientExecutor) { try await callSequentially(n, ref) }
        })
    reporter.report(BenchResult(suite: "actors", benchmark: "actor call Int→Int, tcp loopback", value: 1 / calls,
                                unit: "calls/s", baseline: "raw TCP ping-pong", baselineValue: 1 / raw, higherIsBetter: true))
    reporter.note("same calls with no executors (caller and calls on the global pool): \(fmt(1 / (try await measureCalls { n in try await callSequentially(n, ref) }))) calls/s")

    reporter.note("\(concurrentCallers) callers on the client loop, \(concurrentCalls) calls in all, one actor; baseline: the raw ping-pong (one in flight)")
    let (_, concurrent) = try await interleaved(iterations: concurrentCalls,
        baseline: { n in try await pingPong.run(n / 8) },
        spindle: { n in
            try await withTaskExecutorPreference(clientExecutor) { try await callConcurrently(n, callers: concurrentCallers, ref) }
        })
    reporter.report(BenchResult(suite: "actors", benchmark: "actor calls/s, 64 concurrent callers, tcp loopback",
                                value: 1 / concurrent, unit: "calls/s", baseline: "raw TCP ping-pong",
                                baselineValue: 1 / raw, higherIsBetter: true))
    reporter.note("for context: Ray's actor call round trip on this machine kind was 3.1 ms (≈ 320 calls/s; peer figure, not rerun)")

    await client.shutdown()
    await server.shutdown()
    conn.close()
    echoListener.close()
    await clientTCP.shutdown()
    await serverTCP.shutdown()
    await clientLoop.shutdown()
    await serverLoop.shutdown()
    withExtendedLifetime(echo) {}
}

// MARK: helpers

private func quiet(_ c: SpindleActorSystem.Configuration) -> SpindleActorSystem.Configuration {
    var c = c
    c.logger.logLevel = .error
    return c
}

private func callSequentially(_ n: Int, _ ref: BenchEcho) async throws {
    var x = 0
    for _ in 0..<n { x = try await ref.next(x) }
    guard x == n else { throw ActorBenchFailure(text: "expected \(n), got \(x)") }
    blackHole(x)
}

private func callConcurrently(_ n: Int, callers: Int, _ ref: BenchEcho) async throws {
    let each = n / callers
    try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<callers {
            group.addTask {
                var x = 0
                for _ in 0..<each { x = try await ref.next(x) }
                return x
            }
        }
        for try await x in group where x != each { throw ActorBenchFailure(text: "a caller ended at \(x), not \(each)") }
    }
}

/// Median seconds per call of `rounds` rounds (after a warm-up).
private func measureCalls(_ body: (Int) async throws -> Void) async throws -> Double {
    try await measureAsync(iterations: sequentialCalls, rounds: rounds, warmup: 1, body)
}

/// The baseline and the Spindle figure alternately, `rounds` times, after a warm-up of each;
/// the median seconds per iteration of both.
private func interleaved(iterations: Int, baseline: (Int) async throws -> Void,
                         spindle: (Int) async throws -> Void) async throws -> (baseline: Double, spindle: Double) {
    try await baseline(max(1, iterations / 10))
    try await spindle(max(1, iterations / 10))
    var b: [Double] = [], s: [Double] = []
    let clock = SystemClock()
    for _ in 0..<rounds {
        var t0 = clock.now()
        try await baseline(iterations)
        b.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
        t0 = clock.now()
        try await spindle(iterations)
        s.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
    }
    b.sort()
    s.sort()
    return (b[b.count / 2], s[s.count / 2])
}

private struct ActorBenchFailure: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

/// An event loop as a task executor: jobs run on the loop thread.
private final class LoopExecutor: TaskExecutor {
    let loop: EventLoop
    init(_ loop: EventLoop) { self.loop = loop }
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { [self] in job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}
