/// Bytes that do not decode: where, and what was wrong.
package struct ByteReadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Offset in the input where decoding failed.
    package var offset: Int
    package var problem: String

    package init(offset: Int, problem: String) {
        self.offset = offset
        self.problem = problem
    }

    package var description: String { "byte \(offset): \(problem)" }
}

/// Appends fixed-layout little-endian fields: the writer of every control message that is
/// not an envelope frame (runner messages, worker-process frames, node-engine values).
package struct ByteWriter: Sendable {
    package var bytes: [UInt8]

    package init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inlinable package mutating func u8(_ v: UInt8) { bytes.append(v) }
    @inlinable package mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    @inlinable package mutating func u16(_ v: UInt16) { append(littleEndian: v) }
    @inlinable package mutating func u32(_ v: UInt32) { append(littleEndian: v) }
    @inlinable package mutating func u64(_ v: UInt64) { append(littleEndian: v) }
    @inlinable package mutating func i64(_ v: Int64) { append(littleEndian: UInt64(bitPattern: v)) }
    @inlinable package mutating func f64(_ v: Double) { append(littleEndian: v.bitPattern) }

    /// Raw bytes, no length.
    @inlinable package mutating func raw(_ v: some Sequence<UInt8>) { bytes.append(contentsOf: v) }

    /// A u32 length, then the bytes.
    @inlinable package mutating func lengthPrefixed(_ v: some Collection<UInt8>) {
        u32(UInt32(truncatingIfNeeded: v.count))
        bytes.append(contentsOf: v)
    }

    /// A u32 length, then the UTF-8 bytes.
    @inlinable package mutating func string(_ s: String) { lengthPrefixed(Array(s.utf8)) }

    @inlinable
    mutating func append<T: FixedWidthInteger>(littleEndian v: T) { bytes.appendLittleEndian(v) }
}

extension Array where Element == UInt8 {
    /// Appends `v` in little-endian byte order.
    @inlinable
    package mutating func appendLittleEndian<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}

/// Reads fixed-layout little-endian fields from a byte slice; every failure is a
/// `ByteReadError` naming the offset (counted from the start of the input given to `init`,
/// plus `base`) and what was expected. Reading is total: no input traps.
package struct ByteReader: Sendable {
    package let bytes: ArraySlice<UInt8>
    /// The next byte to read, as an index into `bytes`.
    package private(set) var index: Int
    private let base: Int

    /// - Parameters:
    ///   - bytes: the input.
    ///   - base: added to offsets in errors, for input that starts inside a larger stream.
    package init(_ bytes: ArraySlice<UInt8>, base: Int = 0) {
        self.bytes = bytes
        self.index = bytes.startIndex
        self.base = base
    }

    package init(_ bytes: [UInt8], base: Int = 0) { self.init(bytes[...], base: base) }

    /// Offset of the next byte from the start of the input (plus `base`).
    package var offset: Int { base + (index - bytes.startIndex) }
    package var remaining: Int { bytes.endIndex - index }
    package var isAtEnd: Bool { index >= bytes.endIndex }

    package func error(_ problem: String, at offset: Int? = nil) -> ByteReadError {
        ByteReadError(offset: offset ?? self.offset, problem: problem)
    }

    package mutating func u8() throws(ByteReadError) -> UInt8 {
        guard index < bytes.endIndex else { throw error("truncated: expected 1 byte") }
        defer { index += 1 }
        return bytes[index]
    }

    package mutating func bool() throws(ByteReadError) -> Bool {
        let at = offset
        switch try u8() {
        case 0: return false
        case 1: return true
        case let b: throw error("a boolean must be 0 or 1, not \(b)", at: at)
        }
    }

    package mutating func u16() throws(ByteReadError) -> UInt16 { try integer() }
    package mutating func u32() throws(ByteReadError) -> UInt32 { try integer() }
    package mutating func u64() throws(ByteReadError) -> UInt64 { try integer() }
    package mutating func i64() throws(ByteReadError) -> Int64 { Int64(bitPattern: try integer()) }
    package mutating func f64() throws(ByteReadError) -> Double { Double(bitPattern: try integer()) }

    private mutating func integer<T: FixedWidthInteger>() throws(ByteReadError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw error("truncated: expected \(size) bytes, \(remaining) left") }
        var v: T = 0
        for i in 0..<size { v |= T(bytes[index + i]) << (8 * i) }
        index += size
        return v
    }

    /// The next `count` bytes.
    package mutating func slice(_ count: Int) throws(ByteReadError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else {
            throw error("length \(count) runs past the end (\(remaining) bytes left)")
        }
        defer { index += count }
        return bytes[index..<(index + count)]
    }

    /// A u32 length, then that many bytes.
    package mutating func lengthPrefixed() throws(ByteReadError) -> ArraySlice<UInt8> {
        try slice(Int(try u32()))
    }

    /// A u32 length, then that many bytes of valid UTF-8.
    package mutating func string() throws(ByteReadError) -> String {
        let at = offset
        let s = try lengthPrefixed()
        guard let text = String(validating: s, as: UTF8.self) else { throw error("string is not valid UTF-8", at: at) }
        return text
    }

    /// The rest of the input.
    package mutating func rest() -> ArraySlice<UInt8> {
        defer { index = bytes.endIndex }
        return bytes[index...]
    }

    /// Fails unless every byte was read.
    package func expectEnd() throws(ByteReadError) {
        guard isAtEnd else { throw error("\(remaining) unexpected bytes after the message") }
    }

    /// A count of items each at least `minimumSize` bytes long, refused before anything is
    /// reserved when the rest of the input cannot hold them.
    package mutating func count(ofItemsAtLeast minimumSize: Int, what: String) throws(ByteReadError) -> Int {
        let at = offset
        let n = Int(try u32())
        guard n <= remaining / max(minimumSize, 1) else {
            throw error("\(n) \(what) cannot fit in \(remaining) bytes", at: at)
        }
        return n
    }
}
