/// Decodes a byte stream of frames back into envelopes, incrementally.
///
/// Two ways to use it:
/// - **Owned envelopes:** `feed` bytes as they arrive (any split: single bytes, whole buffers,
///   several frames at once) and call `next()` until it returns nil.
/// - **Borrowed views:** `decode(_:forEach:)` hands each complete frame to a closure as an
///   `EnvelopeView` whose payload points into the bytes passed in (or, for a frame that
///   straddled two calls, into the decoder's own buffer). Complete frames are parsed in
///   place: nothing is copied or allocated per frame; only the bytes of an incomplete last
///   frame are kept for the next call.
///
/// Either way the decoder is
/// - **incremental**: every split of the same bytes yields the same envelopes and errors;
/// - **bounded**: a frame whose declared size exceeds `maxFrameSize` is rejected as soon as its
///   8-byte prefix has arrived, before anything is allocated for it;
/// - **total**: any byte string yields envelopes or a `FrameError` naming the stream offset
///   and the problem, never a trap.
///
/// After an error the decoder stays failed: `next()` throws the same error again and further
/// bytes are ignored (a stream cannot be resynchronised once framing is lost).
public struct FrameDecoder: Sendable {
    /// The largest frame, in bytes (prefix + header + payload), this decoder accepts.
    public let maxFrameSize: Int

    private var buffer: [UInt8] = []
    /// Index in `buffer` of the first byte not yet decoded.
    private var readIndex = 0
    /// Stream offset of `buffer[0]`.
    private var baseOffset = 0
    private var failure: FrameError?

    /// - Parameter maxFrameSize: larger frames are rejected with `FrameError.Kind.oversized`.
    ///   Clamped to `FrameLayout.minimumFrameSize ... FrameLayout.largestFrameSize`.
    public init(maxFrameSize: Int = FrameLayout.defaultMaxFrameSize) {
        self.maxFrameSize = FrameLayout.clampMax(maxFrameSize)
    }

    /// Bytes fed but not yet returned as envelopes.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Stream offset of the next byte to decode (bytes consumed by returned envelopes).
    public var streamOffset: Int { baseOffset + readIndex }

    /// The error that stopped this decoder, if any.
    public var failed: FrameError? { failure }

    /// Appends received bytes. Ignored once the decoder has failed.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, !bytes.isEmpty else { return }
        compact()
        buffer.append(contentsOf: bytes.assumingMemoryBound(to: UInt8.self))
    }

    /// Appends received bytes. Ignored once the decoder has failed.
    public mutating func feed(_ bytes: [UInt8]) {
        guard failure == nil, !bytes.isEmpty else { return }
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// The next complete envelope, or nil when more bytes are needed.
    /// - Throws: `FrameError` when the stream is not valid frames (and on every later call).
    public mutating func next() throws(FrameError) -> Envelope? {
        if let failure { throw failure }
        let start = baseOffset + readIndex
        let from = readIndex, limit = maxFrameSize
        let result = buffer.withUnsafeBytes { all -> Step<Envelope> in
            var envelope: Envelope?
            switch Self.parse(UnsafeRawBufferPointer(rebasing: all[from...]), streamOffset: start,
                              maxFrameSize: limit, deliver: { envelope = $0.envelope; return true }) {
            case .needMore: return .needMore(0)
            case .frame(let length, _): return .consumed(length, envelope.unsafelyUnwrapped)
            case .failure(let error): return .failed(error)
            }
        }
        switch result {
        case .needMore:
            return nil
        case .consumed(let length, let envelope):
            consumeBuffered(length)
            return envelope
        case .failed(let error):
            fail(error)
            throw error
        }
    }

    /// Decodes the bytes buffered so far followed by `bytes`, calling `body` with a borrowed
    /// view of each complete frame, in order.
    ///
    /// The view (and its payload pointer) is valid only during the call to `body`. Bytes of
    /// an incomplete last frame are kept (copied) for the next call. When `body` returns
    /// false, decoding stops after that frame and every byte not yet decoded is kept: a later
    /// `decode` or `next()` continues from there.
    /// - Returns: false when `body` stopped the decoding, true otherwise.
    /// - Throws: `FrameError` when the stream is not valid frames (and on every later call);
    ///   the frames before the bad one have been handed to `body`.
    @discardableResult
    public mutating func decode(_ bytes: UnsafeRawBufferPointer,
                                forEach body: (EnvelopeView) -> Bool) throws(FrameError) -> Bool {
        if let failure { throw failure }
        var input = bytes
        let limit = maxFrameSize
        // 1. Finish what is buffered, taking from `input` only what the pending frame needs.
        while readIndex < buffer.count {
            let start = baseOffset + readIndex
            let from = readIndex
            var keepGoing = true
            let result = buffer.withUnsafeBytes { all -> Step<Void> in
                switch Self.parse(UnsafeRawBufferPointer(rebasing: all[from...]), streamOffset: start,
                                  maxFrameSize: limit, deliver: body) {
                case .needMore(let need): return .needMore(need)
                case .frame(let length, let more):
                    keepGoing = more
                    return .consumed(length, ())
                case .failure(let error): return .failed(error)
                }
            }
            switch result {
            case .consumed(let length, _):
                consumeBuffered(length)
                if !keepGoing {
                    keep(input)
                    return false
                }
            case .needMore(let need):
                if input.isEmpty { return true }
                let take = min(max(need - bufferedByteCount, 1), input.count)
                buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[..<take]).assumingMemoryBound(to: UInt8.self))
                input = UnsafeRawBufferPointer(rebasing: input[take...])
            case .failed(let error):
                fail(error)
                throw error
            }
        }
        // 2. Nothing buffered: parse complete frames in place.
        if readIndex > 0 {
            baseOffset += readIndex
            readIndex = 0
            buffer.removeAll(keepingCapacity: true)
        }
        var offset = 0
        while offset < input.count {
            // Whole, well-formed frames go through the fast path; `parse` takes the rest (a frame
            // cut short, or one whose problem it names).
            if let base = input.baseAddress {
                var length = 0
                repeat {
                    length = Self.deliverWholeFrame(at: base + offset, available: input.count - offset,
                                                    maxFrameSize: limit, body)
                    if length < 0 {
                        offset -= length
                        baseOffset += offset
                        keep(UnsafeRawBufferPointer(rebasing: input[offset...]))
                        return false
                    }
                    offset += length
                } while length > 0
                if offset == input.count { break }
            }
            switch Self.parse(UnsafeRawBufferPointer(rebasing: input[offset...]),
                              streamOffset: baseOffset + offset, maxFrameSize: limit, deliver: body) {
            case .frame(let length, let keepGoing):
                offset += length
                if !keepGoing {
                    baseOffset += offset
                    keep(UnsafeRawBufferPointer(rebasing: input[offset...]))
                    return false
                }
            case .needMore:
                baseOffset += offset
                keep(UnsafeRawBufferPointer(rebasing: input[offset...]))
                return true
            case .failure(let error):
                baseOffset += offset
                fail(error)
                throw error
            }
        }
        baseOffset += offset
        return true
    }

    /// Declares the end of the stream.
    /// - Throws: `FrameError` (kind `.truncated`) when undecoded bytes remain, or the error
    ///   the decoder already failed with.
    public mutating func finish() throws(FrameError) {
        if let failure { throw failure }
        let have = bufferedByteCount
        guard have > 0 else { return }
        // Say how many bytes the incomplete frame needed, when its prefix is there.
        var need = FrameLayout.prefixSize
        if have >= FrameLayout.prefixSize {
            need = buffer.withUnsafeBytes { all in
                let hdr = Int(all[readIndex + 3])
                let len = Int(UInt32(littleEndian: all.loadUnaligned(fromByteOffset: readIndex + 4, as: UInt32.self)))
                return FrameLayout.prefixSize + hdr + len
            }
        }
        let error = FrameError(.truncated(have: have, need: need), offset: streamOffset)
        failure = error
        throw error
    }

    // MARK: internals

    private enum Step<Value> {
        case needMore(Int)
        case consumed(Int, Value)
        case failed(FrameError)
    }

    private mutating func consumeBuffered(_ length: Int) {
        readIndex += length
        if readIndex == buffer.count {
            baseOffset += readIndex
            readIndex = 0
            buffer.removeAll(keepingCapacity: true)
        }
    }

    /// Appends undecoded bytes to the buffer (their stream offset follows the buffer's end).
    private mutating func keep(_ rest: UnsafeRawBufferPointer) {
        guard !rest.isEmpty else { return }
        compact()
        buffer.append(contentsOf: rest.assumingMemoryBound(to: UInt8.self))
    }

    private mutating func fail(_ error: FrameError) {
        failure = error
        baseOffset += readIndex
        readIndex = 0
        buffer = []
    }

    /// Drops consumed bytes when that is cheap relative to what stays (amortised O(1)/byte).
    private mutating func compact() {
        guard readIndex > 0 else { return }
        let live = buffer.count - readIndex
        if live == 0 {
            buffer.removeAll(keepingCapacity: true)
        } else if readIndex >= live && readIndex >= 4096 {
            buffer.removeSubrange(0..<readIndex)
        } else {
            return
        }
        baseOffset += readIndex
        readIndex = 0
    }

    private enum ParseResult {
        /// The frame is incomplete; it needs at least this many bytes in all (its full size once
        /// the prefix is known), always more than are available.
        case needMore(Int)
        /// A frame of this many bytes was handed to `deliver`, which answered `keepGoing`.
        case frame(length: Int, keepGoing: Bool)
        case failure(FrameError)
    }

    /// What the prefix of the frame at the start of some bytes says.
    private enum PrefixResult {
        /// As `ParseResult.needMore`.
        case needMore(Int)
        /// A valid prefix: the declared header length and the whole frame's size (within the limit).
        case frame(headerLength: Int, total: Int)
        case failure(FrameError)
    }

    /// Checks the prefix (magic, version, header and payload lengths) of the frame at the start
    /// of `raw`, each byte as soon as it has arrived.
    @inline(__always)
    private static func parsePrefix(_ raw: UnsafeRawBufferPointer, streamOffset at: Int,
                                    maxFrameSize: Int) -> PrefixResult {
        let avail = raw.count
        let p = FrameLayout.prefixSize
        if avail < 2 { return .needMore(p) }
        if raw[0] != FrameLayout.magic0 || raw[1] != FrameLayout.magic1 {
            return .failure(FrameError(.badMagic(raw[0], raw[1]), offset: at))
        }
        if avail < 3 { return .needMore(p) }
        if raw[2] != FrameLayout.version {
            return .failure(FrameError(.unsupportedVersion(raw[2]), offset: at + 2))
        }
        if avail < 4 { return .needMore(p) }
        let headerLength = Int(raw[3])
        if headerLength < FrameLayout.fixedHeaderSize {
            return .failure(FrameError(.headerTooShort(declared: headerLength, minimum: FrameLayout.fixedHeaderSize),
                                       offset: at + 3))
        }
        if avail < p { return .needMore(p) }
        let payloadLength = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let total = p + headerLength + payloadLength
        if total > maxFrameSize {
            return .failure(FrameError(.oversized(size: total, limit: maxFrameSize), offset: at + 4))
        }
        return .frame(headerLength: headerLength, total: total)
    }

    /// Parses one frame at the start of `raw`, checking each field as soon as it has arrived,
    /// and hands a view of it to `deliver`.
    @inline(__always)
    private static func parse(_ raw: UnsafeRawBufferPointer, streamOffset at: Int, maxFrameSize: Int,
                              deliver: (EnvelopeView) -> Bool) -> ParseResult {
        let headerLength: Int, total: Int
        switch parsePrefix(raw, streamOffset: at, maxFrameSize: maxFrameSize) {
        case .needMore(let need): return .needMore(need)
        case .failure(let error): return .failure(error)
        case .frame(let h, let t): (headerLength, total) = (h, t)
        }
        if raw.count < total { return .needMore(total) }
        let p = FrameLayout.prefixSize
        let presence = raw[p + FrameLayout.offPresence]
        if presence & ~FrameLayout.knownPresenceBits != 0 {
            return .failure(FrameError(.malformedHeader("unknown presence bits 0x\(String(presence, radix: 16))"),
                                       offset: at + p + FrameLayout.offPresence))
        }
        let required = FrameLayout.headerSize(presence: presence)
        if headerLength < required {
            return .failure(FrameError(.headerTooShort(declared: headerLength, minimum: required), offset: at + 3))
        }
        guard let keepGoing = deliverFrame(raw.baseAddress!, headerLength: headerLength, total: total,
                                           presence: presence, deliver) else {
            return .failure(zeroField(raw.baseAddress!, presence: presence, streamOffset: at))
        }
        return .frame(length: total, keepGoing: keepGoing)
    }

    /// Delivers the frame at `p` when all of it is among the `available` bytes and it is well
    /// formed, with none of `parse`'s bookkeeping: one load checks the prefix, and no result is
    /// built. Returns the frame's length, negated when `deliver` asked to stop, or 0 when the
    /// frame must go through `parse` (cut short, or malformed in a way `parse` names).
    @inline(__always)
    private static func deliverWholeFrame(at p: UnsafeRawPointer, available: Int, maxFrameSize: Int,
                                          _ deliver: (EnvelopeView) -> Bool) -> Int {
        guard let (headerLength, total) = wholeFrame(at: p, available: available, maxFrameSize: maxFrameSize)
        else { return 0 }
        let presence = p.load(fromByteOffset: FrameLayout.prefixSize + FrameLayout.offPresence, as: UInt8.self)
        guard presence & ~FrameLayout.knownPresenceBits == 0,
              headerLength >= FrameLayout.headerSize(presence: presence),
              let keepGoing = deliverFrame(p, headerLength: headerLength, total: total, presence: presence, deliver)
        else { return 0 }
        return keepGoing ? total : -total
    }

    /// The header length and size of the frame at `p` when its prefix is valid (one load) and
    /// all of it is among the `available` bytes; nil otherwise (`parsePrefix` says why).
    @inline(__always)
    private static func wholeFrame(at p: UnsafeRawPointer, available: Int, maxFrameSize: Int) -> (headerLength: Int, total: Int)? {
        guard available >= FrameLayout.minimumFrameSize else { return nil }
        let prefix = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
        let expected = UInt64(FrameLayout.magic0) | UInt64(FrameLayout.magic1) << 8 | UInt64(FrameLayout.version) << 16
        guard prefix & 0xFF_FFFF == expected else { return nil }
        let headerLength = Int(truncatingIfNeeded: (prefix >> 24) & 0xFF)
        let total = FrameLayout.prefixSize &+ headerLength &+ Int(truncatingIfNeeded: prefix >> 32)
        guard headerLength >= FrameLayout.fixedHeaderSize, total <= available, total <= maxFrameSize else { return nil }
        return (headerLength, total)
    }

    /// Builds the view of the whole frame at `p`, whose prefix and presence bits have been
    /// checked, and hands it to `deliver`; returns its answer, or nil without calling it when a
    /// field marked present is zero (zero is written by leaving the field out, so every frame
    /// has one canonical form).
    @inline(__always)
    private static func deliverFrame(_ p: UnsafeRawPointer, headerLength: Int, total: Int, presence: UInt8,
                                     _ deliver: (EnvelopeView) -> Bool) -> Bool? {
        func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        let h = FrameLayout.prefixSize
        var source: NodeID?
        var destination: NodeID?
        var correlation: UInt64 = 0
        var sequence: UInt64 = 0
        var stamp = HLCTimestamp.zero
        var deadline: UInt64 = 0
        if presence != 0 {
            var o = h + FrameLayout.fixedHeaderSize
            if presence & FrameLayout.hasSource != 0 {
                source = NodeID(raw: RawID128(high: u64(o), low: u64(o + 8)))
                o += 16
            }
            if presence & FrameLayout.hasDestination != 0 {
                destination = NodeID(raw: RawID128(high: u64(o), low: u64(o + 8)))
                o += 16
            }
            if presence & FrameLayout.hasCorrelation != 0 {
                correlation = u64(o)
                if correlation == 0 { return nil }
                o += 8
            }
            if presence & FrameLayout.hasSequence != 0 {
                sequence = u64(o)
                if sequence == 0 { return nil }
                o += 8
            }
            if presence & FrameLayout.hasStamp != 0 {
                stamp = HLCTimestamp(physical: u64(o), logical: u32(o + 8))
                if stamp.physical == 0 && stamp.logical == 0 { return nil }
                o += 12
            }
            if presence & FrameLayout.hasDeadline != 0 {
                deadline = u64(o)
                if deadline == 0 { return nil }
            }
        }
        // Built once, as a constant, right before the call: `deliver` borrows it where it was
        // built. (A view returned, or kept in a variable, was copied with wide moves right
        // after its fields were stored one by one, which stalls store forwarding per frame.)
        let view = EnvelopeView(
            protocolTag: ProtocolTag(rawValue: u16(h + FrameLayout.offTag)),
            kind: u16(h + FrameLayout.offKind),
            flags: EnvelopeFlags(rawValue: u16(h + FrameLayout.offFlags)),
            source: source, destination: destination, correlation: correlation, sequence: sequence,
            stamp: stamp, deadlineBudgetNanos: deadline,
            payload: UnsafeRawBufferPointer(start: p + h + headerLength, count: total - h - headerLength))
        return deliver(view)
    }

    /// The error for a frame in which `deliverFrame` found a field marked present but zero:
    /// names the first such field and its stream offset (the frame starts at `at`).
    private static func zeroField(_ p: UnsafeRawPointer, presence: UInt8, streamOffset at: Int) -> FrameError {
        func u64(_ o: Int) -> UInt64 { p.loadUnaligned(fromByteOffset: o, as: UInt64.self) }
        var o = FrameLayout.prefixSize + FrameLayout.fixedHeaderSize
        if presence & FrameLayout.hasSource != 0 { o += 16 }
        if presence & FrameLayout.hasDestination != 0 { o += 16 }
        if presence & FrameLayout.hasCorrelation != 0 {
            if u64(o) == 0 { return presentButZero("correlation", at + o) }
            o += 8
        }
        if presence & FrameLayout.hasSequence != 0 {
            if u64(o) == 0 { return presentButZero("sequence", at + o) }
            o += 8
        }
        if presence & FrameLayout.hasStamp != 0 {
            if u64(o) == 0 && p.loadUnaligned(fromByteOffset: o + 8, as: UInt32.self) == 0 {
                return presentButZero("stamp", at + o)
            }
            o += 12
        }
        return presentButZero("deadline budget", at + o)
    }

    private static func presentButZero(_ field: String, _ offset: Int) -> FrameError {
        FrameError(.malformedHeader("\(field) marked present but zero"), offset: offset)
    }
}

extension FrameDecoder {
    /// Decodes `bytes`, which must hold whole frames and nothing else, into owned envelopes.
    /// - Throws: `FrameError` for the first bad frame, or `.truncated` when the bytes end
    ///   inside one.
    public static func wholeFrames(_ bytes: UnsafeRawBufferPointer,
                                   maxFrameSize: Int = FrameLayout.largestFrameSize) throws(FrameError) -> [Envelope] {
        var decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        var envelopes: [Envelope] = []
        try decoder.decode(bytes) { view in
            envelopes.append(view.envelope)
            return true
        }
        try decoder.finish()
        return envelopes
    }

    /// Checks that `bytes` are whole frames of at most `maxFrameSize` bytes each by walking
    /// their prefixes (magic, version, lengths; headers and payloads are not read).
    /// - Throws: `FrameError` naming the first bad prefix and its offset, or `.truncated` when
    ///   the bytes end inside a frame.
    public static func validateWholeFrames(_ bytes: UnsafeRawBufferPointer, maxFrameSize: Int) throws(FrameError) {
        var at = 0
        if let base = bytes.baseAddress {
            // Whole frames with a valid prefix in one load each; `parsePrefix` names a bad one.
            while let (_, total) = wholeFrame(at: base + at, available: bytes.count - at, maxFrameSize: maxFrameSize) {
                at += total
            }
        }
        while at < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[at...])
            switch parsePrefix(rest, streamOffset: at, maxFrameSize: maxFrameSize) {
            case .needMore(let need): throw FrameError(.truncated(have: rest.count, need: need), offset: at)
            case .failure(let error): throw error
            case .frame(_, let total):
                if total > rest.count { throw FrameError(.truncated(have: rest.count, need: total), offset: at) }
                at += total
            }
        }
    }
}
