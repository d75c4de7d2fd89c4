/// Decodes a byte stream of frames back into envelopes, incrementally.
///
/// Feed bytes as they arrive (any split: single bytes, whole buffers, several frames at once)
/// and call `next()` until it returns nil. The decoder is
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
        let result = buffer.withUnsafeBytes { all in
            Self.parse(UnsafeRawBufferPointer(rebasing: all[readIndex...]),
                       streamOffset: start, maxFrameSize: maxFrameSize)
        }
        switch result {
        case .needMore:
            return nil
        case .frame(let envelope, let length):
            readIndex += length
            if readIndex == buffer.count {
                baseOffset += readIndex
                readIndex = 0
                buffer.removeAll(keepingCapacity: true)
            }
            return envelope
        case .failure(let error):
            failure = error
            buffer = []
            baseOffset += readIndex
            readIndex = 0
            throw error
        }
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
        case needMore
        case frame(Envelope, length: Int)
        case failure(FrameError)
    }

    /// Parses one frame at the start of `raw`, checking each field as soon as it has arrived.
    private static func parse(_ raw: UnsafeRawBufferPointer, streamOffset at: Int,
                              maxFrameSize: Int) -> ParseResult {
        let avail = raw.count
        if avail < 2 { return .needMore }
        if raw[0] != FrameLayout.magic0 || raw[1] != FrameLayout.magic1 {
            return .failure(FrameError(.badMagic(raw[0], raw[1]), offset: at))
        }
        if avail < 3 { return .needMore }
        if raw[2] != FrameLayout.version {
            return .failure(FrameError(.unsupportedVersion(raw[2]), offset: at + 2))
        }
        if avail < 4 { return .needMore }
        let headerLength = Int(raw[3])
        if headerLength < FrameLayout.headerSize {
            return .failure(FrameError(.headerTooShort(declared: headerLength, minimum: FrameLayout.headerSize),
                                       offset: at + 3))
        }
        if avail < FrameLayout.prefixSize { return .needMore }
        let payloadLength = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let total = FrameLayout.prefixSize + headerLength + payloadLength
        if total > maxFrameSize {
            return .failure(FrameError(.oversized(size: total, limit: maxFrameSize), offset: at + 4))
        }
        if avail < total { return .needMore }

        let h = FrameLayout.prefixSize
        func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: h + o, as: UInt16.self)) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: h + o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: h + o, as: UInt64.self)) }

        let presence = u16(FrameLayout.offPresence)
        if presence & ~FrameLayout.knownPresenceBits != 0 {
            return .failure(FrameError(.malformedHeader("unknown presence bits 0x\(String(presence, radix: 16))"),
                                       offset: at + h + FrameLayout.offPresence))
        }
        if u32(FrameLayout.offReserved) != 0 {
            return .failure(FrameError(.malformedHeader("reserved field is not zero"),
                                       offset: at + h + FrameLayout.offReserved))
        }
        let src = RawID128(high: u64(FrameLayout.offSource), low: u64(FrameLayout.offSource + 8))
        let dst = RawID128(high: u64(FrameLayout.offDestination), low: u64(FrameLayout.offDestination + 8))
        let hasSource = presence & FrameLayout.hasSource != 0
        let hasDestination = presence & FrameLayout.hasDestination != 0
        if !hasSource && (src.high | src.low) != 0 {
            return .failure(FrameError(.malformedHeader("source id bytes set but source marked absent"),
                                       offset: at + h + FrameLayout.offSource))
        }
        if !hasDestination && (dst.high | dst.low) != 0 {
            return .failure(FrameError(.malformedHeader("destination id bytes set but destination marked absent"),
                                       offset: at + h + FrameLayout.offDestination))
        }

        let payloadStart = h + headerLength
        let payload: [UInt8]
        if payloadLength == 0 {
            payload = []
        } else {
            payload = [UInt8](unsafeUninitializedCapacity: payloadLength) { out, count in
                UnsafeMutableRawBufferPointer(out).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: raw[payloadStart..<(payloadStart + payloadLength)]))
                count = payloadLength
            }
        }
        let envelope = Envelope(
            protocolTag: ProtocolTag(rawValue: u16(FrameLayout.offTag)),
            kind: u16(FrameLayout.offKind),
            flags: EnvelopeFlags(rawValue: u16(FrameLayout.offFlags)),
            source: hasSource ? NodeID(raw: src) : nil,
            destination: hasDestination ? NodeID(raw: dst) : nil,
            correlation: u64(FrameLayout.offCorrelation),
            sequence: u64(FrameLayout.offSequence),
            stamp: HLCTimestamp(physical: u64(FrameLayout.offStampPhysical), logical: u32(FrameLayout.offStampLogical)),
            deadlineBudgetNanos: u64(FrameLayout.offDeadline),
            payload: payload)
        return .frame(envelope, length: total)
    }
}
