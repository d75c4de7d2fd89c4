import SpindleSupport
import Testing
import SpindleKernel

@Suite struct FrameCodecTests {
    private func decodeAll(_ d: inout FrameDecoder) throws(FrameError) -> [Envelope] {
        var out: [Envelope] = []
        while let e = try d.next() { out.append(e) }
        return out
    }

    @Test func roundTripsEveryField() throws {
        let enc = FrameEncoder()
        for i in 0..<40 {
            let e = sampleEnvelope(i)
            let bytes = try enc.encode(e)
            #expect(bytes.count == FrameEncoder.frameSize(of: e))
            var d = FrameDecoder()
            d.feed(bytes)
            #expect(try d.next() == e)
            #expect(try d.next() == nil)
            #expect(d.bufferedByteCount == 0)
            #expect(d.streamOffset == bytes.count)
        }
    }

    @Test func layoutBytesWithNumbersPresent() throws {
        let e = Envelope(protocolTag: .reliable, kind: 0x0203, flags: [.response],
                         correlation: 0x0102030405060708, sequence: 9,
                         stamp: HLCTimestamp(physical: 10, logical: 11),
                         deadlineBudgetNanos: 12, payload: [0xAA, 0xBB])
        let b = try FrameEncoder().encode(e)
        #expect(b.count == 8 + 43 + 2)
        #expect(Array(b[0..<8]) == [0x53, 0x50, 2, 43, 2, 0, 0, 0])   // "SP", v2, header 43, payload 2
        #expect(Array(b[8..<15]) == [1, 0, 3, 2, 1, 0, 0x3C])          // tag, kind, flags, presence
        #expect(Array(b[15..<23]) == [8, 7, 6, 5, 4, 3, 2, 1])          // correlation
        #expect(Array(b[23..<31]) == [9, 0, 0, 0, 0, 0, 0, 0])          // sequence
        #expect(Array(b[31..<43]) == [10, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0])   // stamp
        #expect(Array(b[43..<51]) == [12, 0, 0, 0, 0, 0, 0, 0])         // deadline budget
        #expect(Array(b[51...]) == [0xAA, 0xBB])
    }

    @Test func bareEnvelopeIs79BytesFor64BytePayload() throws {
        let payload = [UInt8](repeating: 0x5A, count: 64)
        let e = Envelope(protocolTag: .application, kind: 2, flags: [.oneWay], payload: payload)
        let b = try FrameEncoder().encode(e)
        #expect(b.count == 79 && FrameEncoder.frameSize(of: e) == 79)
        #expect(Array(b[0..<15]) == [0x53, 0x50, 2, 7, 64, 0, 0, 0, 0x00, 0x01, 2, 0, 4, 0, 0])
        #expect(Array(b[15...]) == payload)
    }

    @Test func reliableAckIs23Bytes() throws {
        // The example in docs/wire-protocol.md.
        let ack = Envelope(protocolTag: .reliable, kind: ReliableWire.ack, sequence: 300)
        #expect(try FrameEncoder().encode(ack) ==
                [0x53, 0x50, 2, 15, 0, 0, 0, 0, 1, 0, 3, 0, 0, 0, 0x08, 0x2C, 0x01, 0, 0, 0, 0, 0, 0])
    }

    @Test func idsComeFirstInPresenceOrder() throws {
        let e = Envelope(protocolTag: .control, kind: 0,
                         source: NodeID(raw: RawID128(high: 1, low: 2)),
                         destination: NodeID(raw: RawID128(high: 0, low: 0)), sequence: 3)
        let b = try FrameEncoder().encode(e)
        #expect(b[3] == 7 + 16 + 16 + 8 && b[14] == 0b1011)
        #expect(Array(b[15..<31]) == [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        #expect(b[31..<47].allSatisfy { $0 == 0 })                      // the all-zero id is present
        #expect(b[47] == 3)
        var d = FrameDecoder()
        d.feed(b)
        #expect(try d.next() == e)
    }

    /// Every split point (and every pair of split points over a short stream) decodes the same.
    @Test func everySplitOfMultiFrameBuffer() throws {
        let enc = FrameEncoder()
        let envelopes = (0..<4).map { sampleEnvelope($0, payloadSize: $0 * 3) }
        var stream: [UInt8] = []
        for e in envelopes { try enc.encode(e, into: &stream) }
        for cut in 0...stream.count {
            var d = FrameDecoder()
            var got: [Envelope] = []
            d.feed(Array(stream[..<cut]))
            got += try decodeAll(&d)
            d.feed(Array(stream[cut...]))
            got += try decodeAll(&d)
            try d.finish()
            #expect(got == envelopes, "split at \(cut)")
        }
        // Two cuts: three pieces, stepping the cuts to keep the test fast.
        for a in stride(from: 0, through: stream.count, by: 5) {
            for b in stride(from: a, through: stream.count, by: 7) {
                var d = FrameDecoder()
                var got: [Envelope] = []
                for piece in [stream[..<a], stream[a..<b], stream[b...]] {
                    piece.withUnsafeBytes { d.feed($0) }
                    got += try decodeAll(&d)
                }
                #expect(got == envelopes, "splits at \(a), \(b)")
            }
        }
        // Byte at a time.
        var d = FrameDecoder()
        var got: [Envelope] = []
        for byte in stream {
            d.feed([byte])
            got += try decodeAll(&d)
        }
        #expect(got == envelopes)
    }

    /// For headers with no optional field, some, and every one.
    @Test(arguments: [0, 1, 5])
    func exactMaxAcceptedAndMaxPlusOneRejected(_ sample: Int) throws {
        let limit = 1000
        let base = sample == 0
            ? Envelope(protocolTag: .application, kind: 1)
            : sampleEnvelope(sample, payloadSize: 0)
        var fits = base
        fits.payload = [UInt8](repeating: 0x11, count: limit - FrameEncoder.frameSize(of: base))
        let enc = FrameEncoder(maxFrameSize: limit)
        let bytes = try enc.encode(fits)
        #expect(bytes.count == limit)
        var d = FrameDecoder(maxFrameSize: limit)
        d.feed(bytes)
        #expect(try d.next() == fits)

        var tooBig = fits
        tooBig.payload.append(0x22)
        #expect(throws: FrameError(.oversized(size: limit + 1, limit: limit), offset: nil)) {
            _ = try enc.encode(tooBig)
        }
        // The decoder rejects it from the 8-byte prefix alone, naming the length field.
        let big = try FrameEncoder(maxFrameSize: limit + 1).encode(tooBig)
        var d2 = FrameDecoder(maxFrameSize: limit)
        d2.feed(Array(big[..<8]))
        #expect(throws: FrameError(.oversized(size: limit + 1, limit: limit), offset: 4)) { _ = try d2.next() }
    }

    @Test func oversizedDeclarationRejectedBeforePayloadArrives() {
        // A prefix declaring a 4 GiB payload: rejected at once, nothing allocated for it.
        var d = FrameDecoder()
        d.feed([0x53, 0x50, 2, 7, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: FrameError.self) { _ = try d.next() }
        #expect(d.failed?.kind == .oversized(size: 8 + 7 + Int(UInt32.max), limit: 16 << 20))
        // The same through the in-place path, with the prefix split over two calls.
        var v = FrameDecoder()
        var calls = 0
        func decode(_ bytes: [UInt8]) -> FrameError? {
            bytes.withUnsafeBytes { raw -> FrameError? in
                do throws(FrameError) { try v.decode(raw) { _ in calls += 1; return true } } catch { return error }
                return nil
            }
        }
        #expect(decode([0x53, 0x50, 2]) == nil)
        let error = decode([0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(error == FrameError(.oversized(size: 8 + 255 + Int(UInt32.max), limit: 16 << 20), offset: 4))
        #expect(calls == 0)
    }

    @Test func errorsNameOffsetAndProblem() throws {
        let good = try FrameEncoder().encode(sampleEnvelope(3))
        func firstError(_ bytes: [UInt8]) -> FrameError? {
            var d = FrameDecoder()
            d.feed(bytes)
            do { while try d.next() != nil {} ; return nil } catch { return error }
        }
        // The second frame has a bad magic: offset is where that frame starts.
        var bad = good + good
        bad[good.count] = 0x47
        #expect(firstError(bad) == FrameError(.badMagic(0x47, 0x50), offset: good.count))
        var v = good; v[2] = 9
        #expect(firstError(v) == FrameError(.unsupportedVersion(9), offset: 2))
        var h = good; h[3] = 6
        #expect(firstError(h) == FrameError(.headerTooShort(declared: 6, minimum: 7), offset: 3))
        // sampleEnvelope(5): source, destination, correlation, sequence, stamp, deadline.
        let full = try FrameEncoder().encode(sampleEnvelope(5))
        #expect(full[14] == 0x3F && full[3] == 75)
        var short = full; short[3] = 74
        #expect(firstError(short) == FrameError(.headerTooShort(declared: 74, minimum: 75), offset: 3))
        var p = good; p[14] = 0x80
        #expect(firstError(p)?.kind == .malformedHeader("unknown presence bits 0x80"))
        #expect(firstError(p)?.offset == 14)
        // A number marked present must not be zero (zero is written by leaving it out).
        let corr = try FrameEncoder().encode(Envelope(protocolTag: .application, kind: 1, correlation: 5))
        var z = corr; z[15] = 0
        #expect(firstError(z) == FrameError(.malformedHeader("correlation marked present but zero"), offset: 15))
        let dl = try FrameEncoder().encode(Envelope(protocolTag: .application, kind: 1, deadlineBudgetNanos: 1 << 40))
        var zd = dl; zd[15 + 5] = 0
        #expect(firstError(zd) == FrameError(.malformedHeader("deadline budget marked present but zero"), offset: 15))
        let text = FrameError(.badMagic(0x47, 0x45), offset: 0).description
        #expect(text.contains("byte 0") && text.contains("0x47"))
    }

    @Test func failedDecoderStaysFailed() throws {
        var d = FrameDecoder()
        d.feed([0x00, 0x01])
        let first = #expect(throws: FrameError.self) { _ = try d.next() }
        d.feed(try FrameEncoder().encode(sampleEnvelope(1)))
        let second = #expect(throws: FrameError.self) { _ = try d.next() }
        #expect(first == second)
    }

    @Test func longerHeaderIsSkipped() throws {
        // A compatible future writer with a 96-byte header: the extra bytes are ignored.
        let e = sampleEnvelope(5)
        var b = try FrameEncoder().encode(e)
        let h = Int(b[3])
        b[3] = UInt8(h + 16)
        b.insert(contentsOf: [UInt8](repeating: 0xEE, count: 16), at: 8 + h)
        var d = FrameDecoder()
        d.feed(b)
        #expect(try d.next() == e)
    }

    @Test func truncatedStreamReportedAtFinish() throws {
        let b = try FrameEncoder().encode(sampleEnvelope(2))
        var d = FrameDecoder()
        d.feed(Array(b.dropLast()))
        #expect(try d.next() == nil)
        #expect(throws: FrameError(.truncated(have: b.count - 1, need: b.count), offset: 0)) { try d.finish() }
    }

    /// Random bytes, random splits, random corruptions of valid streams: every run ends in
    /// envelopes or a typed error, never a trap; valid prefixes decode exactly.
    @Test func fuzzNeverTraps() throws {
        var rng = SeededRNG(seed: 0x5EED)
        let enc = FrameEncoder(maxFrameSize: 4096)
        var errors = 0, frames = 0
        for round in 0..<3000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0:
                bytes = (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if Bool.random(using: &rng) && bytes.count >= 2 { bytes[0] = 0x53; bytes[1] = 0x50 }
                if bytes.count >= 4 && Bool.random(using: &rng) { bytes[2] = 2; bytes[3] = UInt8.random(in: 7...75, using: &rng) }
            default:
                bytes = []
                for i in 0..<Int.random(in: 1..<4, using: &rng) {
                    try enc.encode(sampleEnvelope(round + i, payloadSize: Int.random(in: 0..<64, using: &rng)), into: &bytes)
                }
                for _ in 0..<Int.random(in: 0..<3, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            var d = FrameDecoder(maxFrameSize: 4096)
            var i = 0
            var outcome: FrameError?
            while i < bytes.count, outcome == nil {
                let n = Int.random(in: 1...17, using: &rng)
                d.feed(Array(bytes[i..<min(bytes.count, i + n)]))
                i += n
                do {
                    while let e = try d.next() {
                        frames += 1
                        // What decodes re-encodes to the same bytes (canonical form).
                        #expect(try FrameEncoder(maxFrameSize: 4096).encode(e).count == FrameEncoder.frameSize(of: e))
                    }
                } catch { outcome = error }
            }
            if outcome == nil { do { try d.finish() } catch { outcome = error } }
            if let outcome {
                errors += 1
                #expect(outcome.offset != nil && outcome.offset! < max(bytes.count, 1))
            }
        }
        #expect(errors > 0 && frames > 0)
    }
}
