import OrderedCollections

/// A value carried by a site of a program: what ops read as inputs and write as outputs.
///
/// Scalars and byte strings cover what crosses the wire; `list` carries sequences (and the
/// result of syscalls that return several values at once, like Hold flush); `record` carries
/// a user type's fields by name, in declaration order. Values are plain data, so they are
/// `Sendable` and travel through the ingress queue and the wire codec unchanged.
///
/// `Codable` types convert to and from values (`Value(encoding:)`, `decode(_:)`): structs
/// and classes become records, arrays lists, `nil` `unit`, `[UInt8]` bytes.
public enum Value: Sendable, Hashable, CustomStringConvertible {
    case unit
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    case list([Value])
    /// Named fields in order (a struct, a class, a dictionary with string keys).
    case record(OrderedDictionary<String, Value>)

    /// The type tag of this value.
    public var type: ValueType {
        switch self {
        case .unit: return .unit
        case .bool: return .bool
        case .int: return .int
        case .uint: return .uint
        case .double: return .double
        case .string: return .string
        case .bytes: return .bytes
        case .list: return .list
        case .record: return .record
        }
    }

    /// Roughly how many bytes the value occupies on the wire; used for result-size caps.
    public var byteCount: Int {
        switch self {
        case .unit: return 1
        case .bool: return 2
        case .int, .uint, .double: return 9
        case .string(let s): return 5 + s.utf8.count
        case .bytes(let b): return 5 + b.count
        case .list(let l): return l.reduce(5) { $0 + $1.byteCount }
        case .record(let r): return r.reduce(5) { $0 + 4 + $1.key.utf8.count + $1.value.byteCount }
        }
    }

    public var description: String {
        switch self {
        case .unit: return "()"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .uint(let u): return "\(u)u"
        case .double(let d): return String(d)
        case .string(let s): return "\"\(s)\""
        case .bytes(let b): return "bytes(\(b.count))"
        case .list(let l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
        case .record(let r): return "{" + r.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        }
    }

    /// The value as a signed integer, when it is an `int` or a `uint` that fits.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .uint(let u): return u <= UInt64(Int64.max) ? Int64(u) : nil
        default: return nil
        }
    }

    /// The value as a string, when it is one.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The field `name` of a record (nil for other values or a missing field).
    public subscript(field name: String) -> Value? {
        if case .record(let r) = self { return r[name] }
        return nil
    }
}

/// The type of a site or an op port. `any` accepts every value.
public enum ValueType: String, Sendable, Hashable, Codable, CustomStringConvertible {
    case unit, bool, int, uint, double, string, bytes, list, record, any

    /// Whether a port of type `self` may be connected to a site of type `other`.
    public func isCompatible(with other: ValueType) -> Bool {
        self == .any || other == .any || self == other
    }

    public var description: String { rawValue }

    /// Whether a site or port of this type takes `value` (`any` takes everything).
    @inline(__always)
    public func accepts(_ value: Value) -> Bool {
        self == .any || self == value.type
    }
}

extension Value: Codable {
    /// JSON form: null, true/false, numbers, strings, arrays; bytes as `{"bytes":[...]}`,
    /// unsigned integers above `Int64.max` as `{"uint":N}`, records as
    /// `{"record":[["field", value], …]}` (pairs, so the field order survives).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .unit; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int64.self) { self = .int(i); return }
        if let d = try? c.decode(Double.self) { self = .double(d); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let l = try? c.decode([Value].self) { self = .list(l); return }
        if let o = try? c.decode([String: [UInt8]].self), let b = o["bytes"] { self = .bytes(b); return }
        if let o = try? c.decode([String: UInt64].self), let u = o["uint"] { self = .uint(u); return }
        if let o = try? c.decode([String: [[Value]]].self), let pairs = o["record"] {
            var fields = OrderedDictionary<String, Value>()
            for pair in pairs {
                guard pair.count == 2, case .string(let name) = pair[0] else {
                    throw DecodingError.dataCorruptedError(
                        in: c, debugDescription: "a record field is a pair [\"name\", value], not \(pair)")
                }
                fields[name] = pair[1]
            }
            self = .record(fields)
            return
        }
        throw DecodingError.dataCorruptedError(
            in: c, debugDescription: "expected null, bool, number, string, array, {\"bytes\":[...]}, {\"uint\":N} or {\"record\":[...]}")
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .unit: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .uint(let u):
            if u <= UInt64(Int64.max) { try c.encode(Int64(u)) } else { try c.encode(["uint": u]) }
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .bytes(let b): try c.encode(["bytes": b])
        case .list(let l): try c.encode(l)
        case .record(let r): try c.encode(["record": r.map { [Value.string($0.key), $0.value] }])
        }
    }
}
