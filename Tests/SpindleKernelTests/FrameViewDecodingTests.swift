import SpindleSupport
import Testing
import SpindleKernel

/// `FrameDecoder.decode(_:forEach:)`: frames parsed in place and handed out as borrowed views.
@Suite struct FrameViewDecodingTests {
    /// Feeds `pieces` through the in-place path; returns owned copies of the views and the error.
    private func viaViews(_ pieces: [[UInt8]], maxFrameSize: Int = FrameLayout.defaultMaxFrameSize,
                          finish: Bool = true) -> ([Envelope], FrameError?) {
        var d = FrameDecoder(maxFrameSize: maxFrameSize)
        var got: [Envelope] = []
        for piece in pieces {
            if let error = decode(&d, piece, { view in got.append(view.envelope); return true }) {
                return (got, error)
            }
        }
        if finish {
            do { try d.finish() } catch { return (got, error) }
        }
        return (got, nil)
    }

    /// Runs `decode(_:forEach:)` over `bytes`; returns the error it threw, if any.
    private func decode(_ d: inout FrameDecoder, _ bytes: [UInt8], _ body: (EnvelopeView) -> Bool) -> FrameError? {
        bytes.withUnsafeBytes { raw -> FrameError? in
            do throws(FrameError) { try d.decode(raw, forEach: body) } catch { return error }
            return nil
        }
    }

    /// The same through `feed` + `next()`.
    private func viaNext(_ pieces: [[UInt8]], maxFrameSize: Int = FrameLayout.defaultMaxFrameSize) -> ([Envelope], FrameError?) {
        var d = FrameDecoder(maxFrameSize: maxFrameSize)
        var got: [Envelope] = []
        do {
            for piece in pieces {
                d.feed(piece)
                while let e = try d.next() { got.append(e) }
            }
            try d.finish()
            return (got, nil)
        } catch {
            return (got, error)
        }
    }

    private func stream(_ envelopes: [Envelope]) throws -> [UInt8] {
        var out: [UInt8] = []
        for e in envelopes { try FrameEncoder().encode(e, into: &out) }
        return out
    }

    @Test func everySplitGivesTheSameEnvelopes() throws {
        let envelopes = (0..<5).map { sampleEnvelope($0, payloadSize: $0 * 5) }
        let bytes = try stream(envelopes)
        for cut in 0...bytes.count {
            let (got, error) = viaViews([Array(bytes[..<cut]), Array(bytes[cut...])])
            #expect(error == nil && got == envelopes, "split at \(cut)")
        }
        let (oneByOne, error) = viaViews(bytes.map { [$0] })
        #expect(error == nil && oneByOne == envelopes)
    }

    @Test func payloadPointsIntoTheCallersBytes() throws {
        let envelopes = (0..<3).map { sampleEnvelope($0, payloadSize: 16) }
        let bytes = try stream(envelopes)
        var d = FrameDecoder()
        var inside = 0
        let error = bytes.withUnsafeBytes { raw -> FrameError? in
            do throws(FrameError) {
                try d.decode(raw) { view in
                    let base = raw.baseAddress!, p = view.payload.baseAddress!
                    if p >= base && p + view.payload.count <= base + raw.count { inside += 1 }
                    return true
                }
            } catch { return error }
            return nil
        }
        #expect(error == nil && inside == 3)   // complete frames are not copied
        #expect(d.bufferedByteCount == 0 && d.streamOffset == bytes.count)
    }

    @Test func stoppingKeepsTheRestForLater() throws {
        let envelopes = (0..<4).map { sampleEnvelope($0) }
        let bytes = try stream(envelopes)
        var d = FrameDecoder()
        var got: [Envelope] = []
        let error = decode(&d, bytes) { view in
            got.append(view.envelope)
            return got.count < 2
        }
        #expect(error == nil && got == Array(envelopes[..<2]))
        #expect(d.bufferedByteCount == bytes.count - FrameEncoder.frameSize(of: envelopes[0]) - FrameEncoder.frameSize(of: envelopes[1]))
        // `next()` and a later `decode` continue where it stopped.
        got.append(try #require(try d.next()))
        #expect(decode(&d, []) { view in got.append(view.envelope); return true } == nil)
        #expect(got == envelopes)
        try d.finish()
    }

    @Test func viewOfAnOwnedEnvelopeAndBack() {
        let e = sampleEnvelope(7, payloadSize: 33)
        let copy = e.withView { view -> Envelope in
            #expect(view.payload.count == 33 && view.sequence == e.sequence && view.source == e.source)
            return view.envelope
        }
        #expect(copy == e)
    }

    @Test func exactMaxAcceptedAndMaxPlusOneRejectedInPlace() throws {
        let limit = 512
        let base = sampleEnvelope(5, payloadSize: 0)
        var fits = base
        fits.payload = [UInt8](repeating: 1, count: limit - FrameEncoder.frameSize(of: base))
        let bytes = try FrameEncoder(maxFrameSize: limit).encode(fits)
        #expect(bytes.count == limit)
        let (got, error) = viaViews([bytes], maxFrameSize: limit)
        #expect(error == nil && got == [fits])
        var big = fits
        big.payload.append(2)
        let bigBytes = try FrameEncoder(maxFrameSize: limit + 1).encode(big)
        // Rejected from the prefix alone: only 8 bytes fed.
        let (none, tooBig) = viaViews([Array(bigBytes[..<8])], maxFrameSize: limit, finish: false)
        #expect(none.isEmpty && tooBig == FrameError(.oversized(size: limit + 1, limit: limit), offset: 4))
    }

    /// Whole frames in one buffer take the in-place fast path; a malformed one among them must
    /// still be named exactly as `next()` names it, after the good frames before it.
    @Test func malformedWholeFramesAreNamedLikeOwnedDecoding() throws {
        let good = try stream([sampleEnvelope(3), sampleEnvelope(4)])
        let full = try FrameEncoder().encode(sampleEnvelope(5))     // every optional field present
        let corr = try FrameEncoder().encode(Envelope(protocolTag: .application, kind: 1, correlation: 5, sequence: 6))
        var corrupted: [[UInt8]] = []
        for (index, value) in [(0, 0x47), (1, 0x00), (2, 9), (3, 6), (3, 74), (14, 0x80), (14, 0x3E)] as [(Int, UInt8)] {
            var f = full; f[index] = value; corrupted.append(f)
        }
        var zeroCorrelation = corr; zeroCorrelation[15] = 0; corrupted.append(zeroCorrelation)
        var zeroSequence = corr; zeroSequence[23] = 0; corrupted.append(zeroSequence)
        // In `full` the fields sit at 15 (source), 31 (destination), 47 (correlation),
        // 55 (sequence), 63 (stamp: physical, then logical at 71, which is 0 here), 75 (deadline).
        let zeroed = [("correlation", 47..<55), ("sequence", 55..<63), ("stamp", 63..<71), ("deadline budget", 75..<83)]
        for (field, range) in zeroed {
            var f = full
            for i in range { f[i] = 0 }
            corrupted.append(f)
            // Named exactly, at the field's stream offset (the frame follows `good`).
            #expect(viaViews([good + f]).1
                    == FrameError(.malformedHeader("\(field) marked present but zero"), offset: good.count + range.lowerBound))
        }
        var logicalOnly = full   // a stamp with only its logical part set is valid
        for i in 63..<71 { logicalOnly[i] = 0 }
        logicalOnly[71] = 1
        corrupted.append(logicalOnly)
        var declined = 0
        for (i, bad) in corrupted.enumerated() {
            let bytes = good + bad + good
            let views = viaViews([bytes])
            let owned = viaNext([bytes])
            #expect(views.0 == owned.0, "case \(i)")
            #expect(views.1 == owned.1, "case \(i)")
            #expect(views.0.count >= 2, "case \(i): the good frames before the bad one are delivered")
            if views.1 != nil { declined += 1 }
        }
        // Valid after all: presence 0x3E in a 75-byte header (a longer header is skipped) and a
        // stamp with only its logical part set. Every other case is an error.
        #expect(declined == corrupted.count - 2)
    }

    /// Random streams (valid, corrupted and random bytes) cut at random points: the in-place
    /// path gives exactly the envelopes and the error that `feed` + `next()` give.
    @Test func fuzzAgreesWithOwnedDecoding() throws {
        var rng = SeededRNG(seed: 0xF00D)
        var errors = 0, frames = 0
        for round in 0..<2000 {
            var bytes: [UInt8] = []
            if round % 4 == 0 {
                bytes = (0..<Int.random(in: 0..<200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if bytes.count >= 4 { bytes[0] = 0x53; bytes[1] = 0x50; bytes[2] = 2 }
            } else {
                for i in 0..<Int.random(in: 1..<5, using: &rng) {
                    try FrameEncoder().encode(sampleEnvelope(round + i, payloadSize: Int.random(in: 0..<40, using: &rng)),
                                              into: &bytes)
                }
                for _ in 0..<Int.random(in: 0..<3, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            var pieces: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let n = Int.random(in: 1...40, using: &rng)
                pieces.append(Array(bytes[i..<min(bytes.count, i + n)]))
                i += n
            }
            let views = viaViews(pieces, maxFrameSize: 2048)
            let owned = viaNext(pieces, maxFrameSize: 2048)
            #expect(views.0 == owned.0, "round \(round)")
            #expect(views.1 == owned.1, "round \(round)")
            // All at once, so whole frames take the fast path.
            let whole = viaViews([bytes], maxFrameSize: 2048)
            #expect(whole.0 == owned.0, "round \(round), whole")
            #expect(whole.1 == owned.1, "round \(round), whole")
            frames += views.0.count
            if views.1 != nil { errors += 1 }
        }
        #expect(errors > 0 && frames > 0)
    }
}
