/// The byte layout of a version-2 frame (see docs/wire-protocol.md).
///
/// ```
/// prefix (8 bytes)                      header (headerLength bytes, ≥ 7)        payload
/// +------+------+-----+-----+---------+ +-----------------------------------+ +-------------+
/// | 'S'  | 'P'  | ver | hdr | payload | | tag kind flags presence [fields]  | | payloadLen  |
/// | 0x53 | 0x50 | 2   | len | len u32 | | (fields present only when set)    | | bytes       |
/// +------+------+-----+-----+---------+ +-----------------------------------+ +-------------+
/// ```
/// All integers are little-endian. The frame size is `8 + headerLength + payloadLength`. The
/// header is 7 fixed bytes (tag u16, kind u16, flags u16, presence u8) followed, in presence-bit
/// order, by the fields whose presence bit is set: source (16), destination (16),
/// correlation (8), sequence (8), stamp (8 + 4), deadline budget (8). A bare envelope with a
/// 64-byte payload is 8 + 7 + 64 = 79 bytes.
public enum FrameLayout {
    /// The two magic bytes every frame starts with: ASCII "SP".
    @inlinable public static var magic0: UInt8 { 0x53 }
    @inlinable public static var magic1: UInt8 { 0x50 }
    /// The frame format version this codec writes and reads (version 1, the fixed 80-byte
    /// header, is no longer read).
    @inlinable public static var version: UInt8 { 2 }
    /// Bytes before the header: magic (2), version (1), header length (1), payload length (4).
    @inlinable public static var prefixSize: Int { 8 }
    /// The fixed part of every header: tag, kind, flags, presence.
    @inlinable public static var fixedHeaderSize: Int { 7 }
    /// The longest header version 2 writes (every optional field present).
    @inlinable public static var largestHeaderSize: Int { fixedHeaderSize + 16 + 16 + 8 + 8 + 12 + 8 }
    /// The smallest possible frame: prefix plus the fixed header, no optional field, no payload.
    @inlinable public static var minimumFrameSize: Int { prefixSize + fixedHeaderSize }
    /// The largest maximum a codec can be configured with (header length and payload length
    /// are bounded by their field widths).
    @inlinable public static var largestFrameSize: Int { prefixSize + 255 + Int(UInt32.max) }
    /// The default maximum frame size: 16 MiB.
    @inlinable public static var defaultMaxFrameSize: Int { 16 << 20 }

    // Fixed header field offsets, relative to the start of the header.
    @inlinable static var offTag: Int { 0 }
    @inlinable static var offKind: Int { 2 }
    @inlinable static var offFlags: Int { 4 }
    @inlinable static var offPresence: Int { 6 }

    /// Presence bits (the byte at header offset 6). Fields follow the fixed header in this order.
    @inlinable static var hasSource: UInt8 { 1 << 0 }
    @inlinable static var hasDestination: UInt8 { 1 << 1 }
    @inlinable static var hasCorrelation: UInt8 { 1 << 2 }
    @inlinable static var hasSequence: UInt8 { 1 << 3 }
    @inlinable static var hasStamp: UInt8 { 1 << 4 }
    @inlinable static var hasDeadline: UInt8 { 1 << 5 }
    @inlinable static var knownPresenceBits: UInt8 { 0x3F }

    /// The header length the presence bits imply.
    @inlinable @inline(__always)
    static func headerSize(presence p: UInt8) -> Int {
        // Each bit contributes its field's size; popcount-free so it compiles to a few adds.
        var n = fixedHeaderSize
        n &+= Int(p & 1) &* 16
        n &+= Int((p >> 1) & 1) &* 16
        n &+= Int((p >> 2) & 1) &* 8
        n &+= Int((p >> 3) & 1) &* 8
        n &+= Int((p >> 4) & 1) &* 12
        n &+= Int((p >> 5) & 1) &* 8
        return n
    }

    /// The presence bits an envelope encodes with: a field is present when it is set
    /// (ids non-nil, numbers and stamp non-zero).
    @inlinable @inline(__always)
    static func presence(of e: borrowing Envelope) -> UInt8 {
        var p: UInt8 = 0
        if e.source != nil { p |= hasSource }
        if e.destination != nil { p |= hasDestination }
        if e.correlation != 0 { p |= hasCorrelation }
        if e.sequence != 0 { p |= hasSequence }
        if e.stamp.physical != 0 || e.stamp.logical != 0 { p |= hasStamp }
        if e.deadlineBudgetNanos != 0 { p |= hasDeadline }
        return p
    }

    /// Clamps a configured maximum into the range a frame can express.
    static func clampMax(_ requested: Int) -> Int {
        min(max(requested, minimumFrameSize), largestFrameSize)
    }
}
