// The `eventloop` suite: raw StreamChannel traffic (no transport, no envelopes) against the
// same raw-libuv C programs the transport suite uses, plus cross-thread execute throughput.
import CBaselines
import Spindle
import Synchronization

private let frameSize = 68  // 4-byte length prefix + 64-byte payload, as the C baselines
private let pingPongTrips = 5_000
private let pumpFrames = 1_000_000

let eventLoopSuite = BenchSuite(name: "eventloop") { reporter in
    let serverLoop = try EventLoop(name: "bench-server")
    let clientLoop = try EventLoop(name: "bench-client")
    defer { _ = serverLoop; _ = clientLoop }

    // Server: echoes everything, or counts frames when `counting` is set.
    let counter = FrameCounter()
    let listener = try await StreamListener.listen(on: serverLoop, address: .tcp(host: "127.0.0.1", port: 0)) { conn in
        conn.start(onRead: { chunk in
            if counter.counting { counter.add(chunk) } else { conn.write(Array(chunk)) }
        }, onClose: { _ in conn.close() })
    }
    let client = try await StreamChannel.connect(on: clientLoop, to: listener.address)
    let driver = EchoDriver(client)
    client.start(onRead: { driver.received($0.count) }, onClose: { _ in })

    reporter.note("ping-pong: \(pingPongTrips) round trips of \(frameSize)-byte frames; client and server on two loop threads")
    let (cPing, sPing) = try await alternate(iterations: pingPongTrips,
        baseline: { n in try checkC(cbaselines_net_pingpong(UInt64(n), UInt32(frameSize - 4)), "C ping-pong") },
        spindle: { n in await driver.run(n) })
    reporter.report(BenchResult(suite: "eventloop", benchmark: "StreamChannel ping-pong 64 B", value: 1 / sPing,
                                unit: "round trips/s", baseline: "C libuv", baselineValue: 1 / cPing, higherIsBetter: true))

    reporter.note("pump: \(pumpFrames) frames of \(frameSize) bytes, one write() per frame from a task, waitUntilWritable backpressure")
    counter.counting = true
    let frame = (0..<frameSize).map { UInt8(truncatingIfNeeded: $0) }
    let (cPump, sPump) = try await alternate(iterations: pumpFrames,
        baseline: { n in try checkC(cbaselines_net_pump(UInt64(n), UInt32(frameSize - 4)), "C pump") },
        spindle: { n in
            let done = counter.expect(n * frameSize)
            for _ in 0..<n {
                if !client.isWritable { try await client.waitUntilWritable() }
                client.write(frame)
            }
            await done.value
        })
    reporter.report(BenchResult(suite: "eventloop", benchmark: "StreamChannel pump 64 B", value: 1 / sPump,
                                unit: "frames/s", baseline: "C libuv", baselineValue: 1 / cPump, higherIsBetter: true))

    reporter.note("pump on the loop: the producer runs on the client loop thread, 1024 frames per loop turn while writable")
    let (cPump2, sPump2) = try await alternate(iterations: pumpFrames,
        baseline: { n in try checkC(cbaselines_net_pump(UInt64(n), UInt32(frameSize - 4)), "C pump") },
        spindle: { n in
            let done = counter.expect(n * frameSize)
            await LoopProducer(client, frame: frame, count: n).run()
            await done.value
        })
    reporter.report(BenchResult(suite: "eventloop", benchmark: "StreamChannel pump 64 B (producer on loop)", value: 1 / sPump2,
                                unit: "frames/s", baseline: "C libuv", baselineValue: 1 / cPump2, higherIsBetter: true))

    // Cross-thread execute: one producer thread, items drained in batches on the loop.
    let executeCount = 1_000_000
    let perExecute = try await measureAsync(iterations: executeCount, rounds: 3) { n in
        let seen = Atomic<Int>(0)
        for _ in 0..<n { clientLoop.execute { seen.add(1, ordering: .relaxed) } }
        _ = try await clientLoop.submit { seen.load(ordering: .relaxed) }
    }
    reporter.report(BenchResult(suite: "eventloop", benchmark: "execute from another thread", value: 1 / perExecute,
                                unit: "closures/s", higherIsBetter: true))

    client.close()
    listener.close()
    await clientLoop.shutdown()
    await serverLoop.shutdown()
}

/// Drives ping-pong from the client's loop thread: the next frame leaves in the read callback.
private final class EchoDriver: @unchecked Sendable {
    // @unchecked Sendable: every var is touched only on the client loop thread.
    let channel: StreamChannel
    let frame: [UInt8]
    var remaining = 0
    var pendingBytes = 0
    var done: CheckedContinuation<Void, Never>?

    init(_ channel: StreamChannel) {
        self.channel = channel
        var f = [UInt8](repeating: 7, count: frameSize)
        f[0] = 0; f[1] = 0; f[2] = 0; f[3] = UInt8(frameSize - 4)
        frame = f
    }

    func run(_ n: Int) async {
        await withCheckedContinuation { c in
            channel.loop.execute {
                self.done = c
                self.remaining = n
                self.pendingBytes = 0
                self.channel.write(self.frame)
            }
        }
    }

    func received(_ count: Int) {
        pendingBytes += count
        while pendingBytes >= frameSize {
            pendingBytes -= frameSize
            remaining -= 1
            if remaining > 0 {
                channel.write(frame)
            } else {
                done?.resume()
                done = nil
            }
        }
    }
}

/// Writes `count` frames from the channel's loop thread, a batch per loop turn while writable.
private final class LoopProducer: @unchecked Sendable {
    // @unchecked Sendable: `left` and `done` are touched only on the loop thread.
    let channel: StreamChannel
    let frame: [UInt8]
    var left: Int
    var done: CheckedContinuation<Void, Never>?

    init(_ channel: StreamChannel, frame: [UInt8], count: Int) {
        self.channel = channel
        self.frame = frame
        self.left = count
    }

    func run() async {
        await withCheckedContinuation { c in
            channel.loop.execute {
                self.done = c
                self.step()
            }
        }
    }

    private func step() {
        var batch = 0
        while left > 0 && batch < 1024 && channel.isWritable {
            channel.write(frame)
            left -= 1
            batch += 1
        }
        if left == 0 {
            done?.resume()
            done = nil
        } else {
            channel.loop.execute { self.step() }
        }
    }
}

/// Counts pumped bytes on the server loop and completes when the expected amount arrived.
private final class FrameCounter: @unchecked Sendable {
    // @unchecked Sendable: `counting` is set before traffic starts; `bytes`/`target`/`waiter`
    // are guarded by `lock`.
    var counting = false
    private let lock = Mutex<(bytes: Int, target: Int, waiter: CheckedContinuation<Void, Never>?)>((0, 0, nil))

    func add(_ chunk: UnsafeRawBufferPointer) {
        let w = lock.withLock { s -> CheckedContinuation<Void, Never>? in
            s.bytes += chunk.count
            guard s.bytes >= s.target, let w = s.waiter else { return nil }
            s.waiter = nil
            return w
        }
        w?.resume()
    }

    func expect(_ bytes: Int) -> Task<Void, Never> {
        lock.withLock { $0.bytes = 0; $0.target = bytes }
        return Task {
            await withCheckedContinuation { c in
                let now = lock.withLock { s -> Bool in
                    if s.bytes >= s.target { return true }
                    s.waiter = c
                    return false
                }
                if now { c.resume() }
            }
        }
    }
}

private func alternate(iterations: Int, baseline: (Int) throws -> Void,
                       spindle: (Int) async throws -> Void) async throws -> (Double, Double) {
    try baseline(max(1, iterations / 10))
    try await spindle(max(1, iterations / 10))
    var b: [Double] = [], s: [Double] = []
    let clock = SystemClock()
    for _ in 0..<5 {
        var t0 = clock.now()
        try baseline(iterations)
        b.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
        t0 = clock.now()
        try await spindle(iterations)
        s.append(Double((clock.now() - t0).nanosecondsClamped) / 1e9 / Double(iterations))
    }
    return (median(b), median(s))
}

private struct EventLoopBenchError: Error, CustomStringConvertible {
    var description: String
}

private func checkC(_ ns: Int64, _ what: String) throws {
    guard ns >= 0 else { throw EventLoopBenchError(description: "\(what) failed with libuv status \(ns)") }
    blackHole(ns)
}
