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

    @Test func fixedLayoutBytes() throws {
        let e = Envelope(protocolTag: .reliable, kind: 0x0203, flags: [.response],
                         correlation: 0x0102030405060708, sequence: 9,
                         stamp: HLCTimestamp(physical: 10, logical: 11),
                         deadlineBudgetNanos: 12, payload: [0xAA, 0xBB])
        let b = try FrameEncoder().encode(e)
        #expect(Array(b[0..<8]) == [0x53, 0x50, 1, 80, 2, 0, 0, 0])
        #expect(Array(b[8..<16]) == [1, 0, 3, 2, 1, 0, 0, 0])        // tag, kind, flags, presence
        #expect(b[16..<48].allSatisfy { $0 == 0 })                      // no source, no destination
        #expect(Array(b[48..<56]) == [8, 7, 6, 5, 4, 3, 2, 1])          // correlation
        #expect(b[56] == 9 && b[64] == 10 && b[72] == 11 && b[76..<80].allSatisfy { $0 == 0 } && b[80] == 12)
        #expect(Array(b[88...]) == [0xAA, 0xBB])
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

    @Test func exactMaxAcceptedAndMaxPlusOneRejected() throws {
        let limit = 1000
        let payloadAtLimit = limit - FrameLayout.minimumFrameSize
        let fits = sampleEnvelope(1, payloadSize: payloadAtLimit)
        let enc = FrameEncoder(maxFrameSize: limit)
        let bytes = try enc.encode(fits)
        #expect(bytes.count == limit)
        var d = FrameDecoder(maxFrameSize: limit)
        d.feed(bytes)
        #expect(try d.next() == fits)

        let tooBig = sampleEnvelope(1, payloadSize: payloadAtLimit + 1)
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
        d.feed([0x53, 0x50, 1, 80, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: FrameError.self) { _ = try d.next() }
        #expect(d.failed?.kind == .oversized(size: 8 + 80 + Int(UInt32.max), limit: 16 << 20))
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
        var h = good; h[3] = 12
        #expect(firstError(h) == FrameError(.headerTooShort(declared: 12, minimum: 80), offset: 3))
        var p = good; p[14] = 0x80
        #expect(firstError(p)?.kind == .malformedHeader("unknown presence bits 0x80"))
        #expect(firstError(p)?.offset == 14)
        var r = good; r[8 + 68] = 1
        #expect(firstError(r) == FrameError(.malformedHeader("reserved field is not zero"), offset: 76))
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
        b[3] = 96
        b.insert(contentsOf: [UInt8](repeating: 0xEE, count: 16), at: 88)
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
                if bytes.count >= 4 && Bool.random(using: &rng) { bytes[2] = 1; bytes[3] = 80 }
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
