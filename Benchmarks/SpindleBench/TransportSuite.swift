// The `transport` suite: SpindleTCP against raw libuv C in the same run, a reliable link over
// SpindleTCP against the bare transport, and the in-process transport. (The frame codec's own
// speed is in the `kernel` suite.)
import CBaselines
import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// 64-byte payloads, like the C baselines' frames.
private let payloadSize = 64
private let pingPongTrips = 5_000
private let pumpMessages = 2_000_000
private let linkMessages = 1_000_000
private let rounds = 5
private let latencyTrips = 20_000

let transportSuite = BenchSuite(name: "transport") { reporter in
    // C and Spindle rounds alternate, so both see the same machine load; medians are reported.
    let pair = try TCPBenchPair()
    do {
        try await runTCPBenchmarks(pair, reporter)
    } catch {
        await pair.shutdown()
        throw error
    }
    await pair.shutdown()
    try await runEncryptedTCPBenchmarks(reporter)
    try await runInProcessBenchmark(reporter)
}

private func runTCPBenchmarks(_ pair: TCPBenchPair, _ reporter: BenchReporter) async throws {
    // Bare TCPTransport: the server echoes two-way envelopes and counts one-way ones.
    let counter = ArrivalCounter()
    let listener = try await pair.server.listen(on: .tcp(host: "127.0.0.1", port: 0)) { conn in
        conn.start(ConnectionHandler(
            onEnvelope: { e in
                if e.flags.contains(.oneWay) { counter.arrived() } else { try? conn.send(e) }
            },
            onClose: { _ in }))
    }
    let conn = try await pair.client.connect(to: listener.address)
    // A second server counts through borrowed views: frames decoded in place from the read
    // buffer, no allocation per message (what the C server does with its borrowed pointer).
    let viewCounter = ArrivalCounter()
    let viewListener = try await pair.server.listen(on: .tcp(host: "127.0.0.1", port: 0)) { conn in
        conn.start(ConnectionHandler(
            onEnvelopeView: { view in if view.flags.contains(.oneWay) { viewCounter.arrived() } },
            onClose: { _ in }))
    }
    let viewConn = try await pair.client.connect(to: viewListener.address)
    let driver = PingPong()
    conn.start(ConnectionHandler(onEnvelope: { _ in driver.pong() }, onClose: { driver.fail(TransportError.closed($0)) }))
    driver.setSender { envelope in try conn.send(envelope) }

    // MARK: ping-pong vs C
    reporter.note("ping-pong: \(pingPongTrips) round trips, \(payloadSize)-byte payloads, server and client on two loop threads")
    let (cPingPong, tcpPingPong) = try await interleaved(iterations: pingPongTrips,
        baseline: { n in try checkC(cbaselines_net_pingpong(UInt64(n), UInt32(payloadSize)), "C ping-pong") },
        spindle: { n in try await driver.run(n) })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp ping-pong 64 B", value: 1 / tcpPingPong, unit: "round trips/s",
        baseline: "C libuv", baselineValue: 1 / cPingPong, higherIsBetter: true))
    reporter.note("ping-pong latency: \(latencyTrips) round trips each, every one timed (HdrHistogram)")
    let (cLatency, tcpLatency) = try await pingPongLatencies(driver)
    reporter.reportLatency(suite: "transport", benchmark: "tcp ping-pong 64 B latency", tcpLatency,
                           baseline: ("C libuv", cLatency))

    // MARK: pump vs C
    reporter.note("pump: \(pumpMessages) one-way messages, \(payloadSize)-byte payloads, one send() per message from a task, waitUntilWritable every 1024; receiver counts through borrowed views")
    let (cPump, tcpPump) = try await interleaved(iterations: pumpMessages,
        baseline: { n in try checkC(cbaselines_net_pump(UInt64(n), UInt32(payloadSize)), "C pump") },
        spindle: { n in try await pump(n, viewCounter) { e in try viewConn.send(e) } backpressure: { try await viewConn.waitUntilWritable() } })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp pump 64 B", value: 1 / tcpPump, unit: "messages/s",
        baseline: "C libuv", baselineValue: 1 / cPump, higherIsBetter: true))
    reporter.note("pump, batched: send(contentsOf:) 1024 envelopes at a time (like C's 1024-frame writes); views")
    let batch = Array(pumpPool[..<1024])
    let (cBatch, tcpBatch) = try await interleaved(iterations: pumpMessages,
        baseline: { n in try checkC(cbaselines_net_pump(UInt64(n), UInt32(payloadSize)), "C pump") },
        spindle: { n in try await pumpBatched(n, batch, viewCounter, viewConn) })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp pump 64 B, send(contentsOf:)", value: 1 / tcpBatch, unit: "messages/s",
        baseline: "C libuv", baselineValue: 1 / cBatch, higherIsBetter: true))
    reporter.note("pump, sender on the loop: the producer runs on the client's loop thread (as C's does), 1024 send() per loop turn while writable; views")
    let (cLoop, tcpLoop) = try await interleaved(iterations: pumpMessages,
        baseline: { n in try checkC(cbaselines_net_pump(UInt64(n), UInt32(payloadSize)), "C pump") },
        spindle: { n in
            viewCounter.arm(n)
            try await LoopPumper(pair.clientLoop, viewConn, count: n).run()
            await viewCounter.wait()
        })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp pump 64 B, sender on the loop", value: 1 / tcpLoop, unit: "messages/s",
        baseline: "C libuv", baselineValue: 1 / cLoop, higherIsBetter: true))
    reporter.note("pump, owned: as the first pump, but the receiver takes owned Envelopes (one payload array each)")
    let (cOwned, tcpOwned) = try await interleaved(iterations: pumpMessages,
        baseline: { n in try checkC(cbaselines_net_pump(UInt64(n), UInt32(payloadSize)), "C pump") },
        spindle: { n in try await pump(n, counter) { e in try conn.send(e) } backpressure: { try await conn.waitUntilWritable() } })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp pump 64 B, owned envelopes", value: 1 / tcpOwned, unit: "messages/s",
        baseline: "C libuv", baselineValue: 1 / cOwned, higherIsBetter: true))
    let frame = Double(FrameEncoder.frameSize(of: pumpPool[0]))
    let cFrame = Double(4 + payloadSize)
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp pump bytes (\(Int(frame)) B vs \(Int(cFrame)) B frames)",
        value: frame / tcpPump / 1e6, unit: "MB/s",
        baseline: "C libuv", baselineValue: cFrame / cPump / 1e6, higherIsBetter: true))

    // MARK: reliable link over TCP vs bare TCP
    let linkCounter = ArrivalCounter()
    let reliableListener = try await ReliableListener.listen(over: pair.server, on: .tcp(host: "127.0.0.1", port: 0)) { link in
        ReliableLink.Handler(
            onDeliver: { e in
                if e.flags.contains(.oneWay) { linkCounter.arrived() } else { try? link.send(e) }
            },
            onUndeliverable: { _, _ in })
    }
    let linkDriver = PingPong()
    let link = ReliableLink.connect(over: pair.client, to: reliableListener.address, handler: .init(
        onDeliver: { _ in linkDriver.pong() },
        onUndeliverable: { _, reason in linkDriver.fail(BenchFailure(text: "undeliverable: \(reason)")) }))
    linkDriver.setSender { envelope in try link.send(envelope) }
    reporter.note("reliable link over TCP vs bare TCP: \(pingPongTrips) round trips and \(linkMessages) one-way messages; both receivers take owned Envelopes, both senders wait for writability every 1024")
    let (bareTrip, linkTrip) = try await interleaved(iterations: pingPongTrips,
        baseline: { n in try await driver.run(n) },
        spindle: { n in try await linkDriver.run(n) })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "reliable link over tcp, ping-pong 64 B", value: 1 / linkTrip,
        unit: "round trips/s", baseline: "bare TCP", baselineValue: 1 / bareTrip, higherIsBetter: true))
    let (barePump, linkPump) = try await interleaved(iterations: linkMessages,
        baseline: { n in try await pump(n, counter) { e in try conn.send(e) } backpressure: { try await conn.waitUntilWritable() } },
        spindle: { n in try await pump(n, linkCounter) { e in try link.send(e) } backpressure: { try await link.waitUntilWritable() } })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "reliable link over tcp, pump 64 B", value: 1 / linkPump,
        unit: "messages/s", baseline: "bare TCP", baselineValue: 1 / barePump, higherIsBetter: true))

    viewConn.close()
    reporter.note("reliable link pump, batched: send(contentsOf:) 1024 at a time on both, owned receivers")
    let (bareBatch, linkBatch) = try await interleaved(iterations: linkMessages,
        baseline: { n in try await pumpBatched(n, batch, counter, send: { try conn.send(contentsOf: $0) },
                                               backpressure: { try await conn.waitUntilWritable() }) },
        spindle: { n in try await pumpBatched(n, batch, linkCounter, send: { try link.send(contentsOf: $0) },
                                              backpressure: { try await link.waitUntilWritable() }) })
    reporter.report(BenchResult(
        suite: "transport", benchmark: "reliable link over tcp, pump 64 B, send(contentsOf:)", value: 1 / linkBatch,
        unit: "messages/s", baseline: "bare TCP", baselineValue: 1 / bareBatch, higherIsBetter: true))

    let stats = link.statistics
    reporter.note("reliable link: \(stats.retransmitted) retransmitted, \(stats.duplicatesDropped) duplicates dropped, \(stats.reconnects) reconnects")
    await link.shutdown()
    await reliableListener.shutdown()
}

private func runInProcessBenchmark(_ reporter: BenchReporter) async throws {
    let inproc = InProcessTransport()
    let listener = try await inproc.listen(on: .inproc(name: "bench-echo")) { conn in
        conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
    }
    let conn = try await inproc.connect(to: listener.address)
    let driver = PingPong()
    conn.start(ConnectionHandler(onEnvelope: { _ in driver.pong() }, onClose: { driver.fail(TransportError.closed($0)) }))
    driver.setSender { envelope in try conn.send(envelope) }
    let secs = try await measureAsync(iterations: pingPongTrips * 4, rounds: 3) { n in try await driver.run(n) }
    await inproc.shutdown()
    reporter.report(BenchResult(
        suite: "transport", benchmark: "in-process ping-pong 64 B", value: 1 / secs,
        unit: "round trips/s", higherIsBetter: true))
}

/// 4096 pump envelopes, each with its own payload buffer, as in real traffic: one shared
/// buffer would make the sending thread and a thread that releases sent messages (a reliable
/// link's ack handling) fight over its reference count.
private let pumpPool: [Envelope] = (0..<4096).map { _ in
    Envelope(protocolTag: .application, kind: 2, flags: [.oneWay], payload: [UInt8](repeating: 0x5A, count: payloadSize))
}

/// Sends `n` one-way envelopes from this task (calling `backpressure` every 1024) and returns
/// once the receiver has counted them all.
private func pump(_ n: Int, _ counter: ArrivalCounter,
                  send: (Envelope) throws -> Void, backpressure: () async throws -> Void) async throws {
    counter.arm(n)
    var i = 0
    while i < n {
        try send(pumpPool[i & 4095])
        i += 1
        if i & 1023 == 0 { try await backpressure() }
    }
    await counter.wait()
}

/// Sends `n` one-way envelopes from this task in batches of `batch.count` with one
/// `send(contentsOf:)` each (backpressure between batches) and returns once all have arrived.
private func pumpBatched(_ n: Int, _ batch: [Envelope], _ counter: ArrivalCounter,
                         _ conn: any TransportConnection) async throws {
    try await pumpBatched(n, batch, counter, send: { try conn.send(contentsOf: $0) },
                          backpressure: { try await conn.waitUntilWritable() })
}

private func pumpBatched(_ n: Int, _ batch: [Envelope], _ counter: ArrivalCounter,
                         send: ([Envelope]) throws -> Void, backpressure: () async throws -> Void) async throws {
    counter.arm(n)
    var left = n
    while left >= batch.count {
        try send(batch)
        left -= batch.count
        try await backpressure()
    }
    if left > 0 { try send(Array(batch[..<left])) }
    await counter.wait()
}

/// Runs the baseline and Spindle alternately for `rounds` rounds after one short warm-up each;
/// returns the median seconds per iteration of each.
private func interleaved(iterations: Int,
                         baseline: (Int) async throws -> Void,
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
    return (median(b), median(s))
}

/// Times `latencyTrips` round trips one by one in C and through `driver`, C first.
private func pingPongLatencies(_ driver: PingPong) async throws -> (c: Latencies, spindle: Latencies) {
    var cNanos = [UInt64](repeating: 0, count: latencyTrips)
    try checkC(cNanos.withUnsafeMutableBufferPointer {
        cbaselines_net_pingpong_latencies(UInt64(latencyTrips), UInt32(payloadSize), $0.baseAddress)
    }, "C ping-pong latencies")
    let spindle = try await driver.runRecording(latencyTrips)
    return (Latencies(nanoseconds: cNanos), spindle)
}

/// A benchmark that could not run; the text says why.
private struct BenchFailure: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

/// Checks a C baseline's result (nanoseconds, or a negative libuv status).
private func checkC(_ ns: Int64, _ what: String) throws {
    guard ns >= 0 else { throw BenchFailure(text: "\(what) failed with libuv status \(ns)") }
    blackHole(ns)
}

/// Two TCP transports on two loops, like the C baseline's two threads.
private final class TCPBenchPair: Sendable {
    let serverLoop: EventLoop
    let clientLoop: EventLoop
    let server: TCPTransport
    let client: TCPTransport

    init(configuration: TCPTransport.Configuration = .init()) throws {
        serverLoop = try EventLoop(name: "bench-server")
        clientLoop = try EventLoop(name: "bench-client")
        server = TCPTransport(loop: serverLoop, configuration: configuration)
        client = TCPTransport(loop: clientLoop, configuration: configuration)
    }

    func shutdown() async {
        await client.shutdown()
        await server.shutdown()
        await clientLoop.shutdown()
        await serverLoop.shutdown()
    }
}

/// Counts envelopes arriving at a receiver and wakes a waiter when a target is reached.
///
/// Like the C server's `frames_seen++`, the count is a plain integer: it is touched only by
/// the receiving handler, whose calls never overlap (the `ConnectionHandler` contract). The
/// target is cumulative and atomic; `arm` adds to it before the sender starts.
private final class ArrivalCounter: @unchecked Sendable {
    // @unchecked Sendable: `seen` is read and written only inside `arrived()`, which one
    // connection handler calls serially; `target` is atomic and `waiter` is under its mutex.
    private var seen = 0
    private let target = Atomic<Int>(0)
    private struct Waiter {
        var done = false
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let waiter = Mutex(Waiter())

    /// Expects `count` more arrivals from now on.
    func arm(_ count: Int) {
        waiter.withLock { $0 = Waiter() }
        target.add(count, ordering: .releasing)
    }

    func arrived() {
        seen += 1
        guard seen == target.load(ordering: .acquiring) else { return }
        let c = waiter.withLock { w -> CheckedContinuation<Void, Never>? in
            w.done = true
            defer { w.continuation = nil }
            return w.continuation
        }
        c?.resume()
    }

    /// Returns once the armed number of envelopes has arrived.
    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let already = waiter.withLock { w -> Bool in
                if w.done { return true }
                w.continuation = c
                return false
            }
            if already { c.resume() }
        }
    }
}

/// Drives ping-pong from the client's receive handler: each reply sends the next ping from
/// the thread that delivered it (the loop thread for TCP), with no hop. The
/// transport and actors suites share it as their raw ping-pong baseline.
final class PingPong: Sendable {
    private struct State {
        var remaining = 0
        var waiter: CheckedContinuation<Result<Void, any Error>, Never>?
        var send: (@Sendable (Envelope) throws -> Void)?
        /// Recording: when the ping in flight left, and each round trip so far.
        var recording = false
        var sentAt: MonotonicInstant = .zero
        var latencies = Latencies()
    }
    private let clock = SystemClock()
    private let ping = Envelope(protocolTag: .application, kind: 1,
                                payload: [UInt8](repeating: 0xA5, count: payloadSize))
    private let state = Mutex(State())

    /// Sets how pings are sent (once, before `run`).
    func setSender(_ send: @escaping @Sendable (Envelope) throws -> Void) {
        state.withLock { $0.send = send }
    }

    /// A reply arrived: send the next ping, or wake `run` after the last.
    func pong() {
        let now = clock.now()
        let (done, send) = state.withLock { s -> (Bool, (@Sendable (Envelope) throws -> Void)?) in
            s.remaining -= 1
            if s.recording {
                s.latencies.record(now - s.sentAt)
                s.sentAt = clock.now()
            }
            return (s.remaining == 0, s.send)
        }
        if done {
            finish(.success(()))
        } else if let send {
            do { try send(ping) } catch { finish(.failure(error)) }
        }
    }

    /// Runs `n` round trips one at a time and returns each one's latency.
    func runRecording(_ n: Int) async throws -> Latencies {
        state.withLock {
            $0.recording = true
            $0.latencies = Latencies()
            $0.sentAt = clock.now()
        }
        defer { state.withLock { $0.recording = false } }
        try await run(n)
        return state.withLock { $0.latencies }
    }

    /// The connection failed: wake `run` with the error.
    func fail(_ error: any Error) { finish(.failure(error)) }

    private func finish(_ result: Result<Void, any Error>) {
        let waiter = state.withLock { s -> CheckedContinuation<Result<Void, any Error>, Never>? in
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: result)
    }

    /// Runs `n` round trips and returns when the last reply has arrived.
    func run(_ n: Int) async throws {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<Void, any Error>, Never>) in
            let send = state.withLock { s -> (@Sendable (Envelope) throws -> Void)? in
                s.remaining = n
                s.waiter = c
                return s.send
            }
            guard let send else { return finish(.failure(BenchFailure(text: "ping-pong has no sender"))) }
            do { try send(ping) } catch { finish(.failure(error)) }
        }
        try result.get()
    }
}

/// Sends one-way envelopes from the connection's loop thread: up to 1024 per loop turn while
/// the connection is writable (what an actor pinned to the loop executor would do).
private final class LoopPumper: @unchecked Sendable {
    // @unchecked Sendable: `left`, `failure` and `done` are touched only on the loop thread.
    let loop: EventLoop
    let conn: any TransportConnection
    var left: Int
    var failure: (any Error)?
    var done: CheckedContinuation<Void, any Error>?

    init(_ loop: EventLoop, _ conn: any TransportConnection, count: Int) {
        self.loop = loop
        self.conn = conn
        self.left = count
    }

    func run() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            loop.execute {
                self.done = c
                self.step()
            }
        }
    }

    private func step() {
        var batch = 0
        do {
            while left > 0 && batch < 1024 && conn.isWritable {
                try conn.send(pumpPool[left & 4095])
                left -= 1
                batch += 1
            }
        } catch {
            done?.resume(throwing: error)
            done = nil
            return
        }
        if left == 0 {
            done?.resume()
            done = nil
        } else {
            loop.execute { self.step() }
        }
    }
}

// MARK: encrypted vs plaintext TCP

/// Ping-pong and batched pump over an encrypted pair and a plaintext pair, side by side;
/// reports each with the plaintext row as baseline, and the CPU time per message of both.
private func runEncryptedTCPBenchmarks(_ reporter: BenchReporter) async throws {
    var keyed = TCPTransport.Configuration()
    keyed.clusterKey = ClusterKey.random()
    let plain = try TCPBenchPair()
    let encrypted = try TCPBenchPair(configuration: keyed)
    do {
        let p = try await EncryptedBenchSide(plain)
        let e = try await EncryptedBenchSide(encrypted)
        reporter.note("encrypted vs plaintext TCP: \(pingPongTrips) round trips and \(pumpMessages) one-way messages in batches of 1024, rounds alternating; CPU is the whole process's")

        let trips = try await interleavedCPU(iterations: pingPongTrips,
            baseline: { n in try await p.pingPong.run(n) },
            spindle: { n in try await e.pingPong.run(n) })
        reporter.report(BenchResult(
            suite: "transport", benchmark: "encrypted tcp ping-pong 64 B", value: 1 / trips.spindle.wall,
            unit: "round trips/s", baseline: "plaintext tcp", baselineValue: 1 / trips.baseline.wall, higherIsBetter: true))
        reporter.report(BenchResult(
            suite: "transport", benchmark: "encrypted tcp ping-pong 64 B, CPU per round trip", value: trips.spindle.cpu * 1e9,
            unit: "ns", baseline: "plaintext tcp", baselineValue: trips.baseline.cpu * 1e9, higherIsBetter: false))

        let batch = Array(pumpPool[..<1024])
        let pumps = try await interleavedCPU(iterations: pumpMessages,
            baseline: { n in try await pumpBatched(n, batch, p.counter, p.oneWay) },
            spindle: { n in try await pumpBatched(n, batch, e.counter, e.oneWay) })
        reporter.report(BenchResult(
            suite: "transport", benchmark: "encrypted tcp pump 64 B, send(contentsOf:)", value: 1 / pumps.spindle.wall,
            unit: "messages/s", baseline: "plaintext tcp", baselineValue: 1 / pumps.baseline.wall, higherIsBetter: true))
        reporter.report(BenchResult(
            suite: "transport", benchmark: "encrypted tcp pump 64 B, CPU per message", value: pumps.spindle.cpu * 1e9,
            unit: "ns", baseline: "plaintext tcp", baselineValue: pumps.baseline.cpu * 1e9, higherIsBetter: false))
    } catch {
        await plain.shutdown()
        await encrypted.shutdown()
        throw error
    }
    await plain.shutdown()
    await encrypted.shutdown()
}

/// One pair's echo server, counting server and connections.
private struct EncryptedBenchSide {
    let pingPong = PingPong()
    let counter = ArrivalCounter()
    let oneWay: any TransportConnection

    init(_ pair: TCPBenchPair) async throws {
        let counter = self.counter
        let listener = try await pair.server.listen(on: .tcp(host: "127.0.0.1", port: 0)) { conn in
            conn.start(ConnectionHandler(
                onEnvelopeView: { view in
                    if view.flags.contains(.oneWay) { counter.arrived() } else { try? conn.send(view.envelope) }
                },
                onClose: { _ in }))
        }
        let echo = try await pair.client.connect(to: listener.address)
        let driver = pingPong
        echo.start(ConnectionHandler(onEnvelope: { _ in driver.pong() }, onClose: { driver.fail(TransportError.closed($0)) }))
        driver.setSender { envelope in try echo.send(envelope) }
        oneWay = try await pair.client.connect(to: listener.address)
    }
}

/// Seconds of wall time and of the process's CPU time per iteration.
private struct WallAndCPU {
    var wall: Double
    var cpu: Double
}

/// Like `interleaved`, also measuring the process's CPU time: medians of both per iteration.
private func interleavedCPU(iterations: Int,
                    baseline: (Int) async throws -> Void,
                    spindle: (Int) async throws -> Void) async throws -> (baseline: WallAndCPU, spindle: WallAndCPU) {
    try await baseline(max(1, iterations / 10))
    try await spindle(max(1, iterations / 10))
    var bw: [Double] = [], bc: [Double] = [], sw: [Double] = [], sc: [Double] = []
    let clock = SystemClock()
    func measure(_ body: (Int) async throws -> Void, _ wall: inout [Double], _ cpu: inout [Double]) async throws {
        let t0 = clock.now(), c0 = processCPUNanos()
        try await body(iterations)
        wall.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
        cpu.append(Double(processCPUNanos() - c0) / 1e9 / Double(iterations))
    }
    for _ in 0..<rounds {
        try await measure(baseline, &bw, &bc)
        try await measure(spindle, &sw, &sc)
    }
    return (WallAndCPU(wall: median(bw), cpu: median(bc)), WallAndCPU(wall: median(sw), cpu: median(sc)))
}

/// CPU time the whole process has used (every thread), in nanoseconds.
private func processCPUNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
