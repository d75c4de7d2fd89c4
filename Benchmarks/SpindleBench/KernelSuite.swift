import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

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

/// CPU time used by the whole process so far, in nanoseconds (all threads).
private func processCPUNanos() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
}

/// Median process CPU nanoseconds per message over `rounds` runs of `body(n)`. Unlike wall
/// time, CPU time is not inflated by other processes competing for the cores.
private func cpuPerMessage(_ n: Int, rounds: Int = 5, _ body: (Int) async throws -> Void) async rethrows -> Double {
    var samples: [Double] = []
    for _ in 0..<rounds {
        let c0 = processCPUNanos()
        try await body(n)
        samples.append((processCPUNanos() - c0) / Double(n))
    }
    return median(samples)
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
        try forEachRead(of: stream) { read in
            decoder.feed(read)
            while let e = try decoder.next() { got += e.payload.count }
        }
        blackHole(got)
    }
    reporter.report(BenchResult(suite: "kernel", benchmark: "frame decode, 64 B payload, 64 KiB reads",
                                value: 1 / decodeSecs, unit: "frames/s", higherIsBetter: true))
    // The same stream decoded in place: borrowed views, no copy or allocation per frame.
    let viewSecs = try measure(iterations: frames) { n in
        var decoder = FrameDecoder()
        var got = 0
        try forEachRead(of: stream) { read in
            try decoder.decode(read) { view in
                got &+= view.payload.count
                return true
            }
        }
        blackHole(got)
    }
    reporter.report(BenchResult(suite: "kernel", benchmark: "frame decode in place (views), 64 B, 64 KiB reads",
                                value: 1 / viewSecs, unit: "frames/s", higherIsBetter: true))
    // A bare one-way envelope (no ids, numbers or stamp): the pump's frame, 79 bytes.
    let bare = Envelope(protocolTag: .application, kind: 2, flags: [.oneWay], payload: payload)
    let bareEncodeSecs = try measure(iterations: frames) { n in
        buffer.removeAll(keepingCapacity: true)
        for _ in 0..<n { try encoder.encode(bare, into: &buffer) }
        blackHole(buffer.count)
    }
    reporter.report(BenchResult(suite: "kernel", benchmark: "frame encode, bare 64 B envelope (79 B frame)",
                                value: 1 / bareEncodeSecs, unit: "frames/s", higherIsBetter: true))

    // In-process transport vs. reliable link over it: one-way pump of 64-byte messages, with
    // asynchronous delivery (handlers on tasks) and inline delivery (pure CPU cost, no hand-off).
    // Each message has its own payload buffer, as in real traffic (one shared buffer would make
    // both cores fight over its reference count).
    let pumped = (0..<200_000).map { i in
        Envelope(protocolTag: .application, kind: 1, payload: [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 64))
    }
    for delivery in [InProcessTransport.Configuration.Delivery.asynchronous, .inline] {
        let label = delivery == .inline ? "inline" : "async"
        let messages = pumped.count
        let transport = InProcessTransport(configuration: .init(delivery: delivery))
        let bareArrivals = Arrivals()
        _ = try await transport.listen(on: .inproc(name: "bench-bare")) { c in
            c.start(ConnectionHandler(onEnvelope: { _ in bareArrivals.arrived() }, onClose: { _ in }))
        }
        let bare = try await transport.connect(to: .inproc(name: "bench-bare"))
        let bareSecs = try await measureAsync(iterations: messages) { n in
            for i in 0..<n { try bare.send(pumped[i]) }
            await bareArrivals.wait(for: n)
        }

        let linkArrivals = Arrivals()
        let listener = try await ReliableListener.listen(over: transport, on: .inproc(name: "bench-link")) { _ in
            ReliableLink.Handler(onDeliver: { _ in linkArrivals.arrived() }, onUndeliverable: { _, _ in })
        }
        let link = ReliableLink.connect(over: transport, to: .inproc(name: "bench-link"),
                                        handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
        while !link.isEstablished { try await Task.sleep(for: .milliseconds(1)) }
        let linkSecs = try await measureAsync(iterations: messages) { n in
            for i in 0..<n { try link.send(pumped[i]) }
            await linkArrivals.wait(for: n)
        }
        reporter.report(BenchResult(suite: "kernel", benchmark: "in-process pump, 64 B, \(label)",
                                    value: 1 / bareSecs, unit: "msg/s", higherIsBetter: true))
        reporter.report(BenchResult(suite: "kernel", benchmark: "reliable link over in-process, 64 B, \(label)",
                                    value: 1 / linkSecs, unit: "msg/s", baseline: "bare in-process",
                                    baselineValue: 1 / bareSecs, higherIsBetter: true))
        // The same pumps measured in CPU time per message (robust on a loaded machine).
        let bareCPU = try await cpuPerMessage(messages) { n in
            for i in 0..<n { try bare.send(pumped[i]) }
            await bareArrivals.wait(for: n)
        }
        let linkCPU = try await cpuPerMessage(messages) { n in
            for i in 0..<n { try link.send(pumped[i]) }
            await linkArrivals.wait(for: n)
        }
        reporter.report(BenchResult(suite: "kernel", benchmark: "in-process pump CPU, 64 B, \(label)",
                                    value: bareCPU, unit: "ns/msg", higherIsBetter: false))
        reporter.report(BenchResult(suite: "kernel", benchmark: "reliable link CPU, 64 B, \(label)",
                                    value: linkCPU, unit: "ns/msg", baseline: "bare in-process",
                                    baselineValue: bareCPU, higherIsBetter: false))
        let st = link.statistics
        reporter.note("link (\(label)): retransmitted \(st.retransmitted), reconnects \(st.reconnects), "
                      + "receiver duplicates \(listener.links.first?.statistics.duplicatesDropped ?? -1)")
        await link.shutdown()
        await listener.shutdown()
        await transport.shutdown()
    }
}

/// Calls `body` with `stream` cut into 64 KiB reads, as a socket would hand it over.
private func forEachRead(of stream: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
    try stream.withUnsafeBytes { all in
        var offset = 0
        while offset < all.count {
            let end = min(all.count, offset + 65_536)
            try body(UnsafeRawBufferPointer(rebasing: all[offset..<end]))
            offset = end
        }
    }
}
