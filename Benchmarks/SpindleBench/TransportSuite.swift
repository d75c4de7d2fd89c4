// The `transport` suite: SpindleTCP against raw libuv C in the same run, plus the in-process
// transport (and reliable links over TCP, when the kernel provides them).
import CBaselines
import Spindle
import Synchronization

/// 64-byte payloads, like the C baselines' frames.
private let payloadSize = 64
private let pingPongTrips = 5_000
private let pumpMessages = 2_000_000

private let rounds = 5

let transportSuite = BenchSuite(name: "transport") { reporter in
    // C and Spindle rounds alternate, so both see the same machine load; medians are reported.

    // MARK: ping-pong
    reporter.note("ping-pong: \(pingPongTrips) round trips of \(payloadSize)-byte payloads, server and client on two loop threads")
    let (cPingPong, spindlePingPong) = try await withTCPPair { client, _ in
        let driver = PingPong(client)
        return try await interleaved(iterations: pingPongTrips,
            baseline: { n in try checkC(cbaselines_net_pingpong(UInt64(n), UInt32(payloadSize)), "C ping-pong") },
            spindle: { n in try await driver.run(n) })
    }
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp ping-pong 64 B", value: 1 / spindlePingPong, unit: "round trips/s",
        baseline: "C libuv", baselineValue: 1 / cPingPong, higherIsBetter: true))

    // MARK: pump
    reporter.note("pump: \(pumpMessages) one-way messages of \(payloadSize)-byte payloads, coalesced writes")
    let (cPump, spindlePump) = try await withTCPPair { client, counter in
        try await interleaved(iterations: pumpMessages,
            baseline: { n in try checkC(cbaselines_net_pump(UInt64(n), UInt32(payloadSize)), "C pump") },
            spindle: { n in try await pump(client, counter, n) })
    }
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp pump 64 B", value: 1 / spindlePump, unit: "messages/s",
        baseline: "C libuv", baselineValue: 1 / cPump, higherIsBetter: true))
    let spindleFrame = Double(FrameEncoder.frameSize(of: Envelope(protocolTag: .application, kind: 0,
                                                                  payload: [UInt8](repeating: 0, count: payloadSize))))
    let cFrame = Double(4 + payloadSize)
    reporter.report(BenchResult(
        suite: "transport", benchmark: "tcp pump bytes (\(Int(spindleFrame)) B vs \(Int(cFrame)) B frames)",
        value: spindleFrame / spindlePump / 1e6, unit: "MB/s",
        baseline: "C libuv", baselineValue: cFrame / cPump / 1e6, higherIsBetter: true))

    // MARK: codec ceiling
    // What one thread spends per message just to frame and unframe it (no sockets): the upper
    // bound the pump's receiving loop can reach.
    let codecMessages = 200_000
    let codec = measure(iterations: codecMessages, rounds: 3) { n in
        let encoder = FrameEncoder()
        var decoder = FrameDecoder()
        let e = Envelope(protocolTag: .application, kind: 2, payload: [UInt8](repeating: 1, count: payloadSize))
        var bytes: [UInt8] = []
        for _ in 0..<n { try? encoder.encode(e, into: &bytes) }
        decoder.feed(bytes)
        var count = 0
        while let d = try? decoder.next() { count &+= d.payload.count }
        blackHole(count)
    }
    reporter.report(BenchResult(
        suite: "transport", benchmark: "frame encode+decode 64 B (one thread)", value: 1 / codec,
        unit: "messages/s", higherIsBetter: true))

    // MARK: in-process
    let inproc = InProcessTransport()
    let listener = try await inproc.listen(on: .inproc(name: "bench-echo")) { conn in
        conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
    }
    let inprocClient = try await inproc.connect(to: listener.address)
    let inprocDriver = PingPong(inprocClient)
    let inprocPingPong = try await measureAsync(iterations: pingPongTrips * 4, rounds: 3) { n in
        try await inprocDriver.run(n)
    }
    await inproc.shutdown()
    reporter.report(BenchResult(
        suite: "transport", benchmark: "in-process ping-pong 64 B", value: 1 / inprocPingPong,
        unit: "round trips/s", baseline: "TCP transport", baselineValue: 1 / spindlePingPong, higherIsBetter: true))
}

/// Runs the baseline and Spindle alternately for `rounds` rounds after one warm-up each;
/// returns the median seconds per iteration of each.
private func interleaved(iterations: Int,
                         baseline: (Int) throws -> Void,
                         spindle: (Int) async throws -> Void) async throws -> (baseline: Double, spindle: Double) {
    try baseline(max(1, iterations / 10))
    try await spindle(max(1, iterations / 10))
    var b: [Double] = [], s: [Double] = []
    let clock = SystemClock()
    for _ in 0..<rounds {
        var t0 = clock.now()
        try baseline(iterations)
        b.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
        t0 = clock.now()
        try await spindle(iterations)
        s.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
    }
    b.sort()
    s.sort()
    return (b[b.count / 2], s[s.count / 2])
}

/// A C baseline's result in nanoseconds, or an error for its negative libuv status.
private struct CBaselineError: Error, CustomStringConvertible {
    var what: String
    var status: Int64
    var description: String { "\(what) failed with libuv status \(status)" }
}

private func checkC(_ ns: Int64, _ what: String) throws {
    guard ns >= 0 else { throw CBaselineError(what: what, status: ns) }
    blackHole(ns)
}

/// Counts envelopes arriving at the server side and wakes a waiter when a target is reached.
private final class ArrivalCounter: Sendable {
    private let remaining = Atomic<Int>(0)
    private struct Waiter {
        var done = false
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let waiter = Mutex(Waiter())

    /// Expects `count` arrivals from now on.
    func arm(_ count: Int) {
        waiter.withLock { $0 = Waiter() }
        remaining.store(count, ordering: .releasing)
    }

    func arrived() {
        guard remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
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

/// Two transports on two loops (like the C baseline's two threads): the server echoes or
/// counts, depending on the benchmark; `body` gets the client connection and the server's counter.
private func withTCPPair<R: Sendable>(_ body: (any TransportConnection, ArrivalCounter) async throws -> R) async throws -> R {
    let serverLoop = try EventLoop(name: "bench-server")
    let clientLoop = try EventLoop(name: "bench-client")
    let server = TCPTransport(loop: serverLoop)
    let client = TCPTransport(loop: clientLoop)
    let counter = ArrivalCounter()
    let listener = try await server.listen(on: .tcp(host: "127.0.0.1", port: 0)) { conn in
        conn.start(ConnectionHandler(
            onEnvelope: { e in
                if e.flags.contains(.oneWay) { counter.arrived() } else { try? conn.send(e) }
            },
            onClose: { _ in }))
    }
    let result: R
    do {
        let conn = try await client.connect(to: listener.address)
        result = try await body(conn, counter)
    } catch {
        await client.shutdown(); await server.shutdown()
        await clientLoop.shutdown(); await serverLoop.shutdown()
        throw error
    }
    await client.shutdown(); await server.shutdown()
    await clientLoop.shutdown(); await serverLoop.shutdown()
    return result
}

/// Sends `n` one-way envelopes from this task (waiting for writability every 1024) and
/// returns once the server has received them all.
private func pump(_ conn: any TransportConnection, _ counter: ArrivalCounter, _ n: Int) async throws {
    let message = Envelope(protocolTag: .application, kind: 2, flags: [.oneWay],
                           payload: [UInt8](repeating: 0x5A, count: payloadSize))
    counter.arm(n)
    var i = 0
    while i < n {
        try conn.send(message)
        i += 1
        if i & 1023 == 0 { try await conn.waitUntilWritable() }
    }
    await counter.wait()
}

/// Drives ping-pong from the client's handler: each reply sends the next ping on the loop.
private final class PingPong: Sendable {
    private struct State {
        var remaining = 0
        var waiter: CheckedContinuation<Result<Void, TransportError>, Never>?
    }
    private let conn: any TransportConnection
    private let ping = Envelope(protocolTag: .application, kind: 1,
                                payload: [UInt8](repeating: 0xA5, count: payloadSize))
    private let state = Mutex(State())

    init(_ conn: any TransportConnection) {
        self.conn = conn
        conn.start(ConnectionHandler(
            onEnvelope: { [weak self] _ in self?.pong() },
            onClose: { [weak self] reason in self?.finish(.failure(.closed(reason))) }))
    }

    private func pong() {
        let done = state.withLock { s -> Bool in
            s.remaining -= 1
            return s.remaining == 0
        }
        if done {
            finish(.success(()))
        } else {
            do throws(TransportError) { try conn.send(ping) } catch { finish(.failure(error)) }
        }
    }

    private func finish(_ result: Result<Void, TransportError>) {
        let waiter = state.withLock { s -> CheckedContinuation<Result<Void, TransportError>, Never>? in
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: result)
    }

    /// Runs `n` round trips and returns when the last reply has arrived.
    func run(_ n: Int) async throws {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<Void, TransportError>, Never>) in
            state.withLock { s in
                s.remaining = n
                s.waiter = c
            }
            do throws(TransportError) { try conn.send(ping) } catch { finish(.failure(error)) }
        }
        try result.get()
    }
}
