/// Appends the primitive encodings the actor wire and `CompactEncoder` share: LEB128
/// varints (zigzag for signed values), little-endian fixed-width numbers and
/// varint-length-prefixed byte strings. (SpindleSupport's `ByteWriter` writes fixed-width
/// fields only; the compact form's point is the varints.)
struct BinaryWriter {
    var bytes: [UInt8]

    init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func byte(_ b: UInt8) { bytes.append(b) }

    /// Unsigned LEB128: 7 bits per byte, high bit set on every byte but the last.
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func varint(_ value: Int) { varint(UInt64(value)) }

    /// Zigzag then LEB128, so small negative numbers stay short.
    mutating func signedVarint(_ value: Int64) {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func fixed64(_ value: UInt64) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
    }

    mutating func fixed32(_ value: UInt32) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
    }

    /// A varint length, then the bytes.
    mutating func blob<C: Collection>(_ data: C) where C.Element == UInt8 {
        varint(UInt64(data.count))
        bytes.append(contentsOf: data)
    }

    /// A varint length, then the UTF-8 bytes.
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { blob($0) }
    }
}

/// Why bytes could not be read: which value, at which offset.
struct BinaryReadError: Error, Sendable, CustomStringConvertible {
    var offset: Int
    var problem: String
    var description: String { "at byte \(offset): \(problem)" }
}

/// Reads what `BinaryWriter` writes, checking every bound: any bytes give values or a
/// `BinaryReadError`, never a trap.
struct BinaryReader {
    let bytes: [UInt8]
    private(set) var offset: Int
    let end: Int

    init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        let r = range ?? 0..<bytes.count
        offset = r.lowerBound
        end = r.upperBound
    }

    var remaining: Int { end - offset }
    var isAtEnd: Bool { offset >= end }

    func failure(_ problem: String) -> BinaryReadError { BinaryReadError(offset: offset, problem: problem) }

    mutating func byte() throws(BinaryReadError) -> UInt8 {
        guard offset < end else { throw failure("expected a byte, found the end") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func varint() throws(BinaryReadError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = offset
        while true {
            guard offset < end else { throw BinaryReadError(offset: start, problem: "varint runs past the end") }
            let b = bytes[offset]
            offset += 1
            if shift == 63 && b > 1 { throw BinaryReadError(offset: start, problem: "varint overflows 64 bits") }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw BinaryReadError(offset: start, problem: "varint longer than 10 bytes") }
        }
    }

    mutating func signedVarint() throws(BinaryReadError) -> Int64 {
        let z = try varint()
        return Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1)))
    }

    /// A count of items that follow, each taking at least `bytesEach` bytes: a varint that
    /// must fit the bytes left after it (and `cap`).
    mutating func count(_ what: String, bytesEach: Int = 1, cap: Int = .max) throws(BinaryReadError) -> Int {
        let start = offset
        let v = try varint()
        let limit = min(cap, remaining / max(1, bytesEach))
        guard v <= UInt64(limit) else {
            throw BinaryReadError(offset: start, problem: "\(what) of \(v) exceeds the \(limit) the bytes left can hold")
        }
        return Int(v)
    }

    mutating func skip(_ n: Int) throws(BinaryReadError) {
        guard n >= 0, n <= remaining else { throw failure("cannot skip \(n) bytes, \(remaining) left") }
        offset += n
    }

    mutating func fixed64() throws(BinaryReadError) -> UInt64 {
        guard remaining >= 8 else { throw failure("expected 8 bytes, \(remaining) left") }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return v
    }

    mutating func fixed32() throws(BinaryReadError) -> UInt32 {
        guard remaining >= 4 else { throw failure("expected 4 bytes, \(remaining) left") }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
        offset += 4
        return v
    }

    /// The range of the next length-prefixed byte string (the bytes are skipped).
    mutating func blobRange() throws(BinaryReadError) -> Range<Int> {
        let n = try count("byte string length")
        defer { offset += n }
        return offset..<(offset + n)
    }

    mutating func blob() throws(BinaryReadError) -> [UInt8] {
        Array(bytes[try blobRange()])
    }

    mutating func string() throws(BinaryReadError) -> String {
        let start = offset
        let r = try blobRange()
        guard let s = String(validating: bytes[r], as: UTF8.self) else {
            throw BinaryReadError(offset: start, problem: "string is not valid UTF-8")
        }
        return s
    }
}
