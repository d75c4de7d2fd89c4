import SpindleKernel
import SpindleSupport

/// A malformed runner message (or checkpoint, or colony snapshot): the field being read, its
/// byte offset, and what was wrong.
struct WireDecodeError: Error, Sendable, CustomStringConvertible {
    var field: String
    var offset: Int
    var problem: String

    init(field: String, offset: Int, problem: String) {
        self.field = field
        self.offset = offset
        self.problem = problem
    }

    /// The reader's error, named with the field that was being read.
    init(field: String, _ error: ByteReadError) {
        self.init(field: field, offset: error.offset, problem: error.problem)
    }

    var description: String { "malformed runner message: \(field) at byte \(offset): \(problem)" }
}

// The runner's messages, checkpoints and colony snapshots are written with SpindleSupport's
// `ByteWriter` and read with its `ByteReader` (fixed-layout little-endian fields, u32 lengths).
// What the runner adds: item counts, and the name of the field being read in every error.

extension ByteWriter {
    /// An item count, as a u32 (clamped; no runner message holds 2³² items).
    mutating func count(_ n: Int) { u32(UInt32(clamping: n)) }
}

extension ByteReader {
    /// Runs one read of `field`, naming the field in its error.
    private mutating func named<T>(_ field: String,
                                   _ read: (inout ByteReader) throws(ByteReadError) -> T) throws(WireDecodeError) -> T {
        do throws(ByteReadError) {
            return try read(&self)
        } catch {
            throw WireDecodeError(field: field, error)
        }
    }

    mutating func u8(_ field: String) throws(WireDecodeError) -> UInt8 {
        try named(field) { (r) throws(ByteReadError) in try r.u8() }
    }

    mutating func u32(_ field: String) throws(WireDecodeError) -> UInt32 {
        try named(field) { (r) throws(ByteReadError) in try r.u32() }
    }

    mutating func u64(_ field: String) throws(WireDecodeError) -> UInt64 {
        try named(field) { (r) throws(ByteReadError) in try r.u64() }
    }

    mutating func i64(_ field: String) throws(WireDecodeError) -> Int64 {
        try named(field) { (r) throws(ByteReadError) in try r.i64() }
    }

    /// A count of items that are each at least `minimumSize` bytes: refused when the rest of
    /// the input cannot hold them, so a corrupt count cannot make the reader allocate.
    mutating func count(_ field: String, minimumSize: Int) throws(WireDecodeError) -> Int {
        try named(field) { (r) throws(ByteReadError) in
            try r.count(ofItemsAtLeast: minimumSize, what: "items of at least \(max(minimumSize, 1)) bytes")
        }
    }

    /// A u32 length, then that many bytes.
    mutating func blob(_ field: String) throws(WireDecodeError) -> [UInt8] {
        try named(field) { (r) throws(ByteReadError) in Array(try r.lengthPrefixed()) }
    }

    /// A u32 length, then that many bytes of valid UTF-8.
    mutating func string(_ field: String) throws(WireDecodeError) -> String {
        try named(field) { (r) throws(ByteReadError) in try r.string() }
    }

    /// The next `n` bytes, without a length.
    mutating func raw(_ n: Int, _ field: String) throws(WireDecodeError) -> [UInt8] {
        try named(field) { (r) throws(ByteReadError) in Array(try r.slice(n)) }
    }

    /// Moves past `n` bytes (checked).
    mutating func skipRaw(_ n: Int, _ field: String) throws(WireDecodeError) {
        try named(field) { (r) throws(ByteReadError) in _ = try r.slice(n) }
    }

    mutating func phase(_ field: String) throws(WireDecodeError) -> Phase {
        let at = offset
        let raw = try u8(field)
        guard let p = Phase(rawValue: raw) else {
            throw WireDecodeError(field: field, offset: at, problem: "unknown phase \(raw)")
        }
        return p
    }

    /// Fails, naming `what` was read, unless every byte was read.
    func expectEnd(_ what: String) throws(WireDecodeError) {
        do throws(ByteReadError) {
            try expectEnd()
        } catch {
            throw WireDecodeError(field: what, error)
        }
    }
}
