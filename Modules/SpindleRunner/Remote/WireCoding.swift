import SpindleKernel

/// Appends little-endian fixed-width fields to a byte array.
struct WireWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func u32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func u64(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }

    mutating func count(_ n: Int) { u32(UInt32(clamping: n)) }

    mutating func blob(_ b: [UInt8]) {
        count(b.count)
        bytes.append(contentsOf: b)
    }

    mutating func string(_ s: String) { blob(Array(s.utf8)) }
}

/// A malformed runner message: what was being read and at which byte offset.
struct WireDecodeError: Error, Sendable, CustomStringConvertible {
    var field: String
    var offset: Int
    var problem: String

    var description: String { "malformed runner message: \(field) at byte \(offset): \(problem)" }
}

/// Reads what `WireWriter` wrote; every read checks bounds and throws with the offset.
struct WireReader {
    let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    /// Checks that `n` bytes remain and moves past them; returns where they start.
    private mutating func skip(_ n: Int, _ field: String) throws(WireDecodeError) -> Int {
        guard n >= 0, bytes.count - offset >= n else {
            throw WireDecodeError(field: field, offset: offset,
                                  problem: "needs \(n) bytes, \(bytes.count - offset) left")
        }
        let at = offset
        offset += n
        return at
    }

    mutating func u8(_ field: String) throws(WireDecodeError) -> UInt8 {
        bytes[try skip(1, field)]
    }

    mutating func u32(_ field: String) throws(WireDecodeError) -> UInt32 {
        let at = try skip(4, field)
        return UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) })
    }

    mutating func u64(_ field: String) throws(WireDecodeError) -> UInt64 {
        let at = try skip(8, field)
        return UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) })
    }

    mutating func i64(_ field: String) throws(WireDecodeError) -> Int64 {
        Int64(bitPattern: try u64(field))
    }

    /// A count of items that are each at least `minimumSize` bytes: bounded by what is left,
    /// so a corrupt count cannot make the reader allocate.
    mutating func count(_ field: String, minimumSize: Int) throws(WireDecodeError) -> Int {
        let at = offset
        let n = Int(try u32(field))
        guard n * max(1, minimumSize) <= bytes.count - offset else {
            throw WireDecodeError(field: field, offset: at,
                                  problem: "count \(n) exceeds the \(bytes.count - offset) bytes left")
        }
        return n
    }

    mutating func blob(_ field: String) throws(WireDecodeError) -> [UInt8] {
        let n = try count(field, minimumSize: 1)
        let at = try skip(n, field)
        return Array(bytes[at..<at + n])
    }

    mutating func string(_ field: String) throws(WireDecodeError) -> String {
        String(decoding: try blob(field), as: UTF8.self)
    }

    mutating func phase(_ field: String) throws(WireDecodeError) -> Phase {
        let at = offset
        let raw = try u8(field)
        guard let p = Phase(rawValue: raw) else {
            throw WireDecodeError(field: field, offset: at, problem: "unknown phase \(raw)")
        }
        return p
    }

    /// Moves past `n` bytes (checked).
    mutating func skipRaw(_ n: Int, _ field: String) throws(WireDecodeError) {
        _ = try skip(n, field)
    }

    func expectEnd(_ what: String) throws(WireDecodeError) {
        guard isAtEnd else {
            throw WireDecodeError(field: what, offset: offset,
                                  problem: "\(bytes.count - offset) unexpected trailing bytes")
        }
    }
}
