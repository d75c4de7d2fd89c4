import Spindle
import Synchronization

/// Counts arrivals and wakes a waiter when the expected number has arrived.
private final class Arrivals: Sendable {
    private struct State {
        var count = 0
        var target = Int.max
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func arrived() {
        let w: CheckedContinuation<Void, Never>? = state.withLock { s in
            s.count += 1
            guard s.count >= s.target, let w = s.waiter else { return nil }
            s.waiter = nil
            return w
        }
        w?.resume()
    }

    /// Waits until `n` more arrivals than at the last reset.
    func wait(for n: Int) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now: Bool = state.withLock { s in
                if s.count >= n { return true }
                s.target = n
                s.waiter = c
                return false
            }
            if now { c.resume() }
        }
        state.withLock { $0.count -= n; $0.target = .max }
    }
}

/// Frame codec, in-process transport and reliable-link throughput.
let kernelSuite = BenchSuite(name: "kernel") { reporter in
    let payload = [UInt8](repeating: 0xAB, count: 64)
    let sample = Envelope(protocolTag: .application, kind: 1, source: NodeID.generate(),
                          destination: NodeID.generate(), correlation: 7, sequence: 1,
                          stamp: HLCTimestamp(physical: 1, logical: 2), payload: payload)

    // Frame codec.
    let encoder = FrameEncoder()
    var buffer: [UInt8] = []
    let frames = 100_000
    let encodeSecs = try measure(iterations: frames) { n in
        buffer.removeAll(keepingCapacity: true)
        for _ in 0..<n { try encoder.encode(sample, into: &buffer) }
        blackHole(buffer.count)
    }
    reporter.report(BenchResult(suite: "kernel", benchmark: "frame encode, 64 B payload", value: 1 / encodeSecs,
                                unit: "frames/s", higherIsBetter: true))
    var stream: [UInt8] = []
    for _ in 0..<frames { try encoder.encode(sample, into: &stream) }
    let decodeSecs = try measure(iterations: frames) { n in
        var decoder = FrameDecoder()
        var got = 0
        var offset = 0
        while offset < stream.count {
            let end = min(stream.count, offset + 65_536)
            stream[offset..<end].withUnsafeBytes { decoder.feed($0) }
            offset = end
            while let e = try decoder.next() { got += e.payload.count }
        }
        blackHole(got)
    }
    reporter.report(BenchResult(suite: "kernel", benchmark: "frame decode, 64 B payload, 64 KiB reads",
                                value: 1 / decodeSecs, unit: "frames/s", higherIsBetter: true))

    // In-process transport vs. reliable link over it: one-way pump of 64-byte messages.
    let messages = 200_000
    let transport = InProcessTransport()
    let bareArrivals = Arrivals()
    _ = try await transport.listen(on: .inproc(name: "bench-bare")) { c in
        c.start(ConnectionHandler(onEnvelope: { _ in bareArrivals.arrived() }, onClose: { _ in }))
    }
    let bare = try await transport.connect(to: .inproc(name: "bench-bare"))
    let message = Envelope(protocolTag: .application, kind: 1, payload: payload)
    let bareSecs = try await measureAsync(iterations: messages) { n in
        for _ in 0..<n { try bare.send(message) }
        await bareArrivals.wait(for: n)
    }

    let linkArrivals = Arrivals()
    let listener = try await ReliableListener.listen(over: transport, on: .inproc(name: "bench-link")) { _ in
        ReliableLink.Handler(onDeliver: { _ in linkArrivals.arrived() }, onUndeliverable: { _, _ in })
    }
    let link = ReliableLink.connect(over: transport, to: .inproc(name: "bench-link"),
                                    handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
    let linkSecs = try await measureAsync(iterations: messages) { n in
        for _ in 0..<n { try link.send(message) }
        await linkArrivals.wait(for: n)
    }
    reporter.report(BenchResult(suite: "kernel", benchmark: "in-process transport pump, 64 B",
                                value: 1 / bareSecs, unit: "msg/s", higherIsBetter: true))
    reporter.report(BenchResult(suite: "kernel", benchmark: "reliable link over in-process, 64 B",
                                value: 1 / linkSecs, unit: "msg/s", baseline: "bare in-process",
                                baselineValue: 1 / bareSecs, higherIsBetter: true))
    await link.shutdown()
    await listener.shutdown()
    await transport.shutdown()
}
