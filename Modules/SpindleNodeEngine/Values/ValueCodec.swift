import OrderedCollections
import SpindleSupport

/// A failure decoding values from wire bytes; names the byte offset and what was wrong.
public struct ValueDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Offset in the payload where decoding failed.
    public var offset: Int
    public var problem: String

    public var description: String { "cannot decode value at byte \(offset): \(problem)" }
}

/// Fixed binary layout for values on the wire (little endian).
///
/// ```
/// tag u8 | body
///   0 unit | 1 bool u8 | 2 int i64 | 3 uint u64 | 4 double f64 bits
///   5 string u32 len + UTF-8 | 6 bytes u32 len + bytes | 7 list u32 count + values
///   8 record u32 count + (name: u32 len + UTF-8, value)…
/// ```
/// Decoding is total: any byte sequence yields values or a `ValueDecodingError`.
enum ValueCodec {
    static let maxDepth = 16

    static func encode(_ value: Value, into out: inout [UInt8]) {
        switch value {
        case .unit: out.append(0)
        case .bool(let b): out.append(1); out.append(b ? 1 : 0)
        case .int(let i): out.append(2); appendU64(UInt64(bitPattern: i), &out)
        case .uint(let u): out.append(3); appendU64(u, &out)
        case .double(let d): out.append(4); appendU64(d.bitPattern, &out)
        case .string(let s):
            out.append(5); appendU32(UInt32(truncatingIfNeeded: s.utf8.count), &out); out.append(contentsOf: s.utf8)
        case .bytes(let b):
            out.append(6); appendU32(UInt32(truncatingIfNeeded: b.count), &out); out.append(contentsOf: b)
        case .list(let l):
            out.append(7); appendU32(UInt32(truncatingIfNeeded: l.count), &out)
            for v in l { encode(v, into: &out) }
        case .record(let r):
            out.append(8); appendU32(UInt32(truncatingIfNeeded: r.count), &out)
            for (name, v) in r {
                appendU32(UInt32(truncatingIfNeeded: name.utf8.count), &out)
                out.append(contentsOf: name.utf8)
                encode(v, into: &out)
            }
        }
    }

    static func appendU64(_ v: UInt64, _ out: inout [UInt8]) { out.appendLittleEndian(v) }

    static func appendU32(_ v: UInt32, _ out: inout [UInt8]) { out.appendLittleEndian(v) }

    /// A cursor over payload bytes: the runtime's `ByteReader`, with its errors as
    /// `ValueDecodingError`s.
    struct Reader {
        private var inner: ByteReader

        init(_ bytes: [UInt8]) { inner = ByteReader(bytes) }

        var offset: Int { inner.offset }
        var remaining: Int { inner.remaining }
        var isAtEnd: Bool { inner.isAtEnd }

        private mutating func read<T>(_ body: (inout ByteReader) throws(ByteReadError) -> T) throws(ValueDecodingError) -> T {
            do {
                return try body(&inner)
            } catch {
                throw ValueDecodingError(offset: error.offset, problem: error.problem)
            }
        }

        mutating func u8() throws(ValueDecodingError) -> UInt8 { try read { r throws(ByteReadError) in try r.u8() } }
        mutating func u32() throws(ValueDecodingError) -> UInt32 { try read { r throws(ByteReadError) in try r.u32() } }
        mutating func u64() throws(ValueDecodingError) -> UInt64 { try read { r throws(ByteReadError) in try r.u64() } }
        mutating func slice(_ count: Int) throws(ValueDecodingError) -> ArraySlice<UInt8> {
            try read { r throws(ByteReadError) in try r.slice(count) }
        }
        mutating func string() throws(ValueDecodingError) -> String { try read { r throws(ByteReadError) in try r.string() } }

        mutating func value(depth: Int = 0) throws(ValueDecodingError) -> Value {
            guard depth < ValueCodec.maxDepth else {
                throw ValueDecodingError(offset: offset, problem: "lists or records nested deeper than \(ValueCodec.maxDepth)")
            }
            let tagOffset = offset
            switch try u8() {
            case 0: return .unit
            case 1: return .bool(try u8() != 0)
            case 2: return .int(Int64(bitPattern: try u64()))
            case 3: return .uint(try u64())
            case 4: return .double(Double(bitPattern: try u64()))
            case 5: return .string(try string())
            case 6: return .bytes(Array(try slice(Int(try u32()))))
            case 7:
                let n = Int(try u32())
                // Each value takes at least one byte: refuse counts the payload cannot hold
                // before reserving anything.
                guard n <= remaining else {
                    throw ValueDecodingError(offset: offset, problem: "list of \(n) values cannot fit in \(remaining) bytes")
                }
                var l: [Value] = []
                l.reserveCapacity(n)
                for _ in 0..<n { l.append(try value(depth: depth + 1)) }
                return .list(l)
            case 8:
                let n = Int(try u32())
                // Each field takes at least five bytes (name length and a tag).
                guard n <= remaining / 5 else {
                    throw ValueDecodingError(offset: offset, problem: "record of \(n) fields cannot fit in \(remaining) bytes")
                }
                var r = OrderedDictionary<String, Value>(minimumCapacity: n)
                for _ in 0..<n {
                    let nameOffset = offset
                    let name = try string()
                    let v = try value(depth: depth + 1)
                    guard r.updateValue(v, forKey: name) == nil else {
                        throw ValueDecodingError(offset: nameOffset, problem: "record field `\(name)` appears twice")
                    }
                }
                return .record(r)
            case let t:
                throw ValueDecodingError(offset: tagOffset, problem: "unknown value tag \(t)")
            }
        }
    }
}
