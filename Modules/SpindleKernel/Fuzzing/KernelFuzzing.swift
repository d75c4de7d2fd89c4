/// Entry points for the fuzz targets (Fuzz/): each feeds untrusted bytes to one of the
/// kernel's parsers and checks what must hold for any input. A violated property stops the
/// process (`preconditionFailure`), which is what a fuzzer reports; parsers themselves must
/// never trap. Package-visible only: not API.
package enum KernelFuzzing {
    /// The frame decoder: whole, in two pieces (split where the first byte says), through
    /// `next()` and through `decode(_:forEach:)` — every route gives the same envelopes and
    /// fails, or not, alike.
    package static func frameDecoder(_ data: UnsafeRawBufferPointer) {
        let limit = 1 << 16
        let split = data.isEmpty ? 0 : Int(data[0]) % (data.count + 1)
        func viaNext(_ pieces: [UnsafeRawBufferPointer]) -> ([Envelope], Bool) {
            var decoder = FrameDecoder(maxFrameSize: limit)
            var out: [Envelope] = []
            for piece in pieces {
                decoder.feed(piece)
                do {
                    while let e = try decoder.next() { out.append(e) }
                } catch {
                    return (out, true)
                }
            }
            return (out, false)
        }
        func viaViews(_ pieces: [UnsafeRawBufferPointer]) -> ([Envelope], Bool) {
            var decoder = FrameDecoder(maxFrameSize: limit)
            var out: [Envelope] = []
            for piece in pieces {
                do {
                    try decoder.decode(piece) { view in
                        out.append(view.envelope)
                        return true
                    }
                } catch {
                    return (out, true)
                }
            }
            return (out, false)
        }
        let whole = [data]
        let halves = [UnsafeRawBufferPointer(rebasing: data[..<split]), UnsafeRawBufferPointer(rebasing: data[split...])]
        let reference = viaNext(whole)
        for (name, result) in [("next() in two pieces", viaNext(halves)), ("views whole", viaViews(whole)),
                               ("views in two pieces", viaViews(halves))] {
            guard result.0 == reference.0 && result.1 == reference.1 else {
                preconditionFailure("frame decoder: \(name) disagrees with next() on the whole input")
            }
        }
        // Round trip: what decodes re-encodes to bytes that decode the same.
        for e in reference.0 {
            guard let bytes = try? FrameEncoder(maxFrameSize: limit).encode(e) else {
                preconditionFailure("frame decoder: a decoded envelope does not re-encode")
            }
            let again = bytes.withUnsafeBytes { viaNext([$0]) }
            guard again.0 == [e] && !again.1 else { preconditionFailure("frame decoder: round trip changed an envelope") }
        }
        _ = try? FrameDecoder.validateWholeFrames(data, maxFrameSize: limit)
    }

    /// A reliable-link core, acceptor and initiator, fed frames decoded from the input as if
    /// they arrived on its connection, with ticks between them: no trap, whatever the values.
    package static func reliableControl(_ data: UnsafeRawBufferPointer) {
        var decoder = FrameDecoder(maxFrameSize: 1 << 16)
        decoder.feed(data)
        var arrivals: [Envelope] = []
        while arrivals.count < 256, let e = try? decoder.next() { arrivals.append(e) }
        let session = SessionID(raw: RawID128(high: 1, low: 2))
        for role in [ReliableLinkCore.Role.acceptor, .initiator] {
            var core = ReliableLinkCore(role: role, session: session,
                                        configuration: .init(maximumQueued: 64, maximumQueuedBytes: 1 << 16),
                                        incarnation: 7)
            var now = MonotonicInstant.zero
            _ = core.handle(.tick, now: now)
            _ = core.handle(.connected, now: now)
            for (i, e) in arrivals.enumerated() {
                now = now + .milliseconds(Int64(e.kind % 64))
                _ = core.handle(i % 3 == 0 ? .receivedBatch([e]) : .received(e), now: now)
                if i % 7 == 0 { _ = core.handle(.send(Envelope(protocolTag: .application, kind: 1, payload: [1])), now: now) }
                if i % 5 == 0 { _ = core.handle(.tick, now: now) }
                _ = core.nextDeadline()
            }
            _ = core.handle(.close, now: now)
            _ = core.handle(.abort, now: now + .seconds(10))
            _ = ReliableWire.refusal(ofHello: arrivals.first ?? Envelope(protocolTag: .reliable, kind: 1))
        }
    }
}

extension KernelFuzzing {
    /// Valid frame streams: envelopes of every header shape, alone and back to back.
    package static func frameSeeds() -> [[UInt8]] {
        let node = NodeID(raw: RawID128(high: 3, low: 4))
        let shapes = [
            Envelope(protocolTag: .application, kind: 1, payload: Array("hello".utf8)),
            Envelope(protocolTag: .nodeEngine, kind: 7, flags: [.oneWay], source: node, destination: node,
                     correlation: 9, sequence: 10, stamp: HLCTimestamp(physical: 1 << 40, logical: 2),
                     deadlineBudgetNanos: 5_000, payload: Array(repeating: 0xAB, count: 300)),
            Envelope(protocolTag: .reliable, kind: 3, sequence: 42),
        ]
        let encoder = FrameEncoder(maxFrameSize: 1 << 16)
        let frames = shapes.map { try! encoder.encode($0) }
        return frames + [frames.flatMap { $0 }]
    }

    /// Valid reliable-link conversations as an acceptor or initiator sees them.
    package static func reliableSeeds() -> [[UInt8]] {
        let session = SessionID(raw: RawID128(high: 1, low: 2))
        let encoder = FrameEncoder(maxFrameSize: 1 << 16)
        func frame(_ e: Envelope) -> [UInt8] { try! encoder.encode(e) }
        func data(_ n: UInt64) -> [UInt8] {
            var e = Envelope(protocolTag: .application, kind: 1, sequence: n, payload: [UInt8(n)])
            e.flags.insert(.sequenced)
            return frame(e)
        }
        let hello = frame(ReliableWire.handshake(kind: ReliableWire.hello, session: session, incarnation: 9,
                                                 knownPeerIncarnation: 0, receivedUpTo: 0, lowestHeld: 1))
        let helloAck = frame(ReliableWire.handshake(kind: ReliableWire.helloAck, session: session, incarnation: 9,
                                                    knownPeerIncarnation: 7, receivedUpTo: 0, lowestHeld: 1))
        let controls = [ReliableWire.ack, ReliableWire.skip, ReliableWire.fin, ReliableWire.finAck].map {
            frame(ReliableWire.control($0, sequence: 1))
        }
        return [hello + data(1) + data(2) + data(3) + controls.flatMap { $0 },
                helloAck + data(1) + controls[0] + controls[2],
                hello + controls[1] + data(5)]
    }
}
