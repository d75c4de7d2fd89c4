/// The fixed byte layout of a version-1 frame (see docs/wire-protocol.md).
///
/// ```
/// prefix (8 bytes)                      header (headerLength bytes, ≥ 80)   payload
/// +------+------+-----+-----+---------+ +------------------------------+ +----------------+
/// | 'S'  | 'P'  | ver | hdr | payload | | tag kind flags presence ...  | | payloadLength  |
/// | 0x53 | 0x50 | 1   | len | len u32 | | (little-endian fields)       | | bytes          |
/// +------+------+-----+-----+---------+ +------------------------------+ +----------------+
/// ```
/// All integers are little-endian. The frame size is `8 + headerLength + payloadLength`.
public enum FrameLayout {
    /// The two magic bytes every frame starts with: ASCII "SP".
    public static let magic0: UInt8 = 0x53
    public static let magic1: UInt8 = 0x50
    /// The frame format version this codec writes and reads.
    public static let version: UInt8 = 1
    /// Bytes before the header: magic (2), version (1), header length (1), payload length (4).
    public static let prefixSize = 8
    /// The header length version 1 writes; a reader accepts longer headers and ignores the
    /// bytes beyond the fields it knows (room for compatible additions).
    public static let headerSize = 80
    /// The smallest possible frame: prefix plus a version-1 header with an empty payload.
    public static let minimumFrameSize = prefixSize + headerSize
    /// The largest maximum a codec can be configured with (header length and payload length
    /// are bounded by their field widths).
    public static let largestFrameSize = prefixSize + 255 + Int(UInt32.max)
    /// The default maximum frame size: 16 MiB.
    public static let defaultMaxFrameSize = 16 << 20

    // Header field offsets, relative to the start of the header.
    static let offTag = 0
    static let offKind = 2
    static let offFlags = 4
    static let offPresence = 6
    static let offSource = 8
    static let offDestination = 24
    static let offCorrelation = 40
    static let offSequence = 48
    static let offStampPhysical = 56
    static let offStampLogical = 64
    static let offReserved = 68
    static let offDeadline = 72

    /// Presence bit: the source id field is meaningful.
    static let hasSource: UInt16 = 1 << 0
    /// Presence bit: the destination id field is meaningful.
    static let hasDestination: UInt16 = 1 << 1
    static let knownPresenceBits: UInt16 = hasSource | hasDestination

    /// Clamps a configured maximum into the range a frame can express.
    static func clampMax(_ requested: Int) -> Int {
        min(max(requested, minimumFrameSize), largestFrameSize)
    }
}
