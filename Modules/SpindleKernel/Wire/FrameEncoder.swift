/// Encodes envelopes as version-2 frames (layout in `FrameLayout` and docs/wire-protocol.md).
///
/// A value type with no state besides its limit: copy it freely, use it from any thread.
public struct FrameEncoder: Sendable {
    /// The largest frame, in bytes (prefix + header + payload), this encoder writes.
    public let maxFrameSize: Int

    /// - Parameter maxFrameSize: frames larger than this are refused with
    ///   `FrameError.Kind.oversized`. Clamped to `FrameLayout.minimumFrameSize ...
    ///   FrameLayout.largestFrameSize`.
    public init(maxFrameSize: Int = FrameLayout.defaultMaxFrameSize) {
        self.maxFrameSize = FrameLayout.clampMax(maxFrameSize)
    }

    /// The number of bytes `e` encodes to: the prefix, the fixed header, the fields that are
    /// set, and the payload.
    @inlinable
    public static func frameSize(of e: borrowing Envelope) -> Int {
        FrameLayout.prefixSize + FrameLayout.headerSize(presence: FrameLayout.presence(of: e)) + e.payload.count
    }

    /// Encodes one envelope into a new array.
    /// - Throws: `FrameError` (kind `.oversized`, no offset) when the frame exceeds the limit.
    public func encode(_ e: Envelope) throws(FrameError) -> [UInt8] {
        let size = Self.frameSize(of: e)
        guard size <= maxFrameSize else {
            throw FrameError(.oversized(size: size, limit: maxFrameSize), offset: nil)
        }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            Self.write(e, presence: FrameLayout.presence(of: e), to: UnsafeMutableRawPointer(buffer.baseAddress!))
            initialized = size
        }
    }

    /// Appends one encoded envelope to `buffer` (several frames can share one buffer).
    /// - Throws: `FrameError` (kind `.oversized`, no offset) when the frame exceeds the limit;
    ///   `buffer` is then unchanged.
    public func encode(_ e: Envelope, into buffer: inout [UInt8]) throws(FrameError) {
        let presence = FrameLayout.presence(of: e)
        let size = FrameLayout.prefixSize + FrameLayout.headerSize(presence: presence) + e.payload.count
        guard size <= maxFrameSize else {
            throw FrameError(.oversized(size: size, limit: maxFrameSize), offset: nil)
        }
        Self.append(e, presence: presence, size: size, to: &buffer)
    }

    /// The non-throwing part of `encode(_:into:)`. Kept out of line: inlined into the
    /// throwing function, the Swift 6.3 optimizer made that function report a spurious
    /// error (a zeroed `FrameError`) after writing the frame correctly.
    @inline(never)
    private static func append(_ e: Envelope, presence: UInt8, size: Int, to buffer: inout [UInt8]) {
        let spare = buffer.capacity - buffer.count
        if spare < size {
            // Grow geometrically: reserving exactly on every append would be quadratic.
            buffer.reserveCapacity(max(buffer.count + size, buffer.capacity * 2))
        }
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: size))
        buffer.withUnsafeMutableBytes { raw in
            _ = Self.write(e, presence: presence, to: raw.baseAddress! + start)
        }
    }

    /// Encodes `e` at `destination`, which must have room for `frameSize(of: e)` bytes, and
    /// returns the number of bytes written.
    ///
    /// For transports that encode straight into their own write buffers. The caller checks
    /// the size against its limit first (`frameSize(of:)`).
    @inlinable @inline(__always)
    public static func encodeUnchecked(_ e: borrowing Envelope, to destination: UnsafeMutableRawPointer) -> Int {
        write(e, presence: FrameLayout.presence(of: e), to: destination)
    }

    /// An upper bound of `frameSize(of: e)` that only looks at the payload: the prefix, the
    /// longest header and the payload. For reserving room before `encodeUnchecked`.
    @inlinable
    public static func frameSizeBound(of e: borrowing Envelope) -> Int {
        FrameLayout.prefixSize + FrameLayout.largestHeaderSize + e.payload.count
    }

    /// Writes the whole frame for `e` at `p`; returns its size.
    @discardableResult @inlinable @inline(__always)
    static func write(_ e: borrowing Envelope, presence: UInt8, to p: UnsafeMutableRawPointer) -> Int {
        write(e, presence: presence, flags: e.flags, sequence: e.sequence, to: p)
    }

    /// Encodes `e` as if its `sequence` were `sequence` and its flags included `flags`, at
    /// `destination` (room for `frameSizeBound(of: e)` bytes); returns the bytes written.
    /// Saves a copy of the envelope for a sender that numbers what it sends (a reliable link).
    @inlinable @inline(__always)
    public static func encodeUnchecked(_ e: borrowing Envelope, sequence: UInt64, addingFlags flags: EnvelopeFlags,
                                       to destination: UnsafeMutableRawPointer) -> Int {
        var presence = FrameLayout.presence(of: e) & ~FrameLayout.hasSequence
        if sequence != 0 { presence |= FrameLayout.hasSequence }
        return write(e, presence: presence, flags: e.flags.union(flags), sequence: sequence, to: destination)
    }

    /// Writes the whole frame for `e`, with `flags` and `sequence` in place of its own, at `p`.
    @discardableResult @inlinable @inline(__always)
    static func write(_ e: borrowing Envelope, presence: UInt8, flags: EnvelopeFlags, sequence: UInt64,
                      to p: UnsafeMutableRawPointer) -> Int {
        let payloadCount = e.payload.count
        let headerLength = FrameLayout.headerSize(presence: presence)
        p.storeBytes(of: FrameLayout.magic0, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: FrameLayout.magic1, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: FrameLayout.version, toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: headerLength), toByteOffset: 3, as: UInt8.self)
        p.storeBytes(of: UInt32(truncatingIfNeeded: payloadCount).littleEndian, toByteOffset: 4, as: UInt32.self)
        let h = FrameLayout.prefixSize
        p.storeBytes(of: e.protocolTag.rawValue.littleEndian, toByteOffset: h + FrameLayout.offTag, as: UInt16.self)
        p.storeBytes(of: e.kind.littleEndian, toByteOffset: h + FrameLayout.offKind, as: UInt16.self)
        p.storeBytes(of: flags.rawValue.littleEndian, toByteOffset: h + FrameLayout.offFlags, as: UInt16.self)
        p.storeBytes(of: presence, toByteOffset: h + FrameLayout.offPresence, as: UInt8.self)
        var o = h + FrameLayout.fixedHeaderSize
        if presence != 0 {
            if let id = e.source?.raw {
                p.storeBytes(of: id.high.littleEndian, toByteOffset: o, as: UInt64.self)
                p.storeBytes(of: id.low.littleEndian, toByteOffset: o + 8, as: UInt64.self)
                o += 16
            }
            if let id = e.destination?.raw {
                p.storeBytes(of: id.high.littleEndian, toByteOffset: o, as: UInt64.self)
                p.storeBytes(of: id.low.littleEndian, toByteOffset: o + 8, as: UInt64.self)
                o += 16
            }
            if presence & FrameLayout.hasCorrelation != 0 {
                p.storeBytes(of: e.correlation.littleEndian, toByteOffset: o, as: UInt64.self)
                o += 8
            }
            if presence & FrameLayout.hasSequence != 0 {
                p.storeBytes(of: sequence.littleEndian, toByteOffset: o, as: UInt64.self)
                o += 8
            }
            if presence & FrameLayout.hasStamp != 0 {
                p.storeBytes(of: e.stamp.physical.littleEndian, toByteOffset: o, as: UInt64.self)
                p.storeBytes(of: e.stamp.logical.littleEndian, toByteOffset: o + 8, as: UInt32.self)
                o += 12
            }
            if presence & FrameLayout.hasDeadline != 0 {
                p.storeBytes(of: e.deadlineBudgetNanos.littleEndian, toByteOffset: o, as: UInt64.self)
                o += 8
            }
        }
        if payloadCount > 0 {
            e.payload.withUnsafeBytes { src in
                (p + o).copyMemory(from: src.baseAddress!, byteCount: payloadCount)
            }
        }
        return o + payloadCount
    }
}
