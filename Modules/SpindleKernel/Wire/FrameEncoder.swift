/// Encodes envelopes as version-1 frames (layout in `FrameLayout` and docs/wire-protocol.md).
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

    /// The number of bytes `e` encodes to.
    @inlinable
    public static func frameSize(of e: Envelope) -> Int {
        FrameLayout.prefixSize + FrameLayout.headerSize + e.payload.count
    }

    /// Encodes one envelope into a new array.
    /// - Throws: `FrameError` (kind `.oversized`, no offset) when the frame exceeds the limit.
    public func encode(_ e: Envelope) throws(FrameError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.frameSize(of: e))
        try encode(e, into: &out)
        return out
    }

    /// Appends one encoded envelope to `buffer` (several frames can share one buffer).
    /// - Throws: `FrameError` (kind `.oversized`, no offset) when the frame exceeds the limit;
    ///   `buffer` is then unchanged.
    public func encode(_ e: Envelope, into buffer: inout [UInt8]) throws(FrameError) {
        let size = Self.frameSize(of: e)
        guard size <= maxFrameSize else {
            throw FrameError(.oversized(size: size, limit: maxFrameSize), offset: nil)
        }
        let spare = buffer.capacity - buffer.count
        if spare < size {
            // Grow geometrically: reserving exactly on every append would be quadratic.
            buffer.reserveCapacity(max(buffer.count + size, buffer.capacity * 2))
        }
        let fixed = FrameLayout.prefixSize + FrameLayout.headerSize
        withUnsafeTemporaryAllocation(byteCount: fixed, alignment: 8) { raw in
            Self.writeFixedPart(of: e, into: raw)
            buffer.append(contentsOf: UnsafeRawBufferPointer(raw).assumingMemoryBound(to: UInt8.self))
        }
        buffer.append(contentsOf: e.payload)
    }

    /// Writes prefix and header (exactly `prefixSize + headerSize` bytes) for `e`.
    static func writeFixedPart(of e: Envelope, into raw: UnsafeMutableRawBufferPointer) {
        raw.storeBytes(of: FrameLayout.magic0, toByteOffset: 0, as: UInt8.self)
        raw.storeBytes(of: FrameLayout.magic1, toByteOffset: 1, as: UInt8.self)
        raw.storeBytes(of: FrameLayout.version, toByteOffset: 2, as: UInt8.self)
        raw.storeBytes(of: UInt8(FrameLayout.headerSize), toByteOffset: 3, as: UInt8.self)
        raw.storeBytes(of: UInt32(truncatingIfNeeded: e.payload.count).littleEndian,
                       toByteOffset: 4, as: UInt32.self)
        let h = FrameLayout.prefixSize
        var presence: UInt16 = 0
        if e.source != nil { presence |= FrameLayout.hasSource }
        if e.destination != nil { presence |= FrameLayout.hasDestination }
        raw.storeBytes(of: e.protocolTag.rawValue.littleEndian, toByteOffset: h + FrameLayout.offTag, as: UInt16.self)
        raw.storeBytes(of: e.kind.littleEndian, toByteOffset: h + FrameLayout.offKind, as: UInt16.self)
        raw.storeBytes(of: e.flags.rawValue.littleEndian, toByteOffset: h + FrameLayout.offFlags, as: UInt16.self)
        raw.storeBytes(of: presence.littleEndian, toByteOffset: h + FrameLayout.offPresence, as: UInt16.self)
        let src = e.source?.raw ?? RawID128(high: 0, low: 0)
        let dst = e.destination?.raw ?? RawID128(high: 0, low: 0)
        raw.storeBytes(of: src.high.littleEndian, toByteOffset: h + FrameLayout.offSource, as: UInt64.self)
        raw.storeBytes(of: src.low.littleEndian, toByteOffset: h + FrameLayout.offSource + 8, as: UInt64.self)
        raw.storeBytes(of: dst.high.littleEndian, toByteOffset: h + FrameLayout.offDestination, as: UInt64.self)
        raw.storeBytes(of: dst.low.littleEndian, toByteOffset: h + FrameLayout.offDestination + 8, as: UInt64.self)
        raw.storeBytes(of: e.correlation.littleEndian, toByteOffset: h + FrameLayout.offCorrelation, as: UInt64.self)
        raw.storeBytes(of: e.sequence.littleEndian, toByteOffset: h + FrameLayout.offSequence, as: UInt64.self)
        raw.storeBytes(of: e.stamp.physical.littleEndian, toByteOffset: h + FrameLayout.offStampPhysical, as: UInt64.self)
        raw.storeBytes(of: e.stamp.logical.littleEndian, toByteOffset: h + FrameLayout.offStampLogical, as: UInt32.self)
        raw.storeBytes(of: UInt32(0), toByteOffset: h + FrameLayout.offReserved, as: UInt32.self)
        raw.storeBytes(of: e.deadlineBudgetNanos.littleEndian, toByteOffset: h + FrameLayout.offDeadline, as: UInt64.self)
    }
}
