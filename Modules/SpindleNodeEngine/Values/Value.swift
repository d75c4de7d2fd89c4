/// A value carried by a site of a program: what ops read as inputs and write as outputs.
///
/// Scalars and byte strings cover what crosses the wire; `list` carries the result of
/// syscalls that return several values at once (Hold flush). Values are plain data, so they
/// are `Sendable` and travel through the ingress queue and the wire codec unchanged.
public enum Value: Sendable, Hashable, CustomStringConvertible {
    case unit
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    case list([Value])

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
}

/// The type of a site or an op port. `any` accepts every value.
public enum ValueType: String, Sendable, Hashable, Codable, CustomStringConvertible {
    case unit, bool, int, uint, double, string, bytes, list, any

    /// Whether a port of type `self` may be connected to a site of type `other`.
    public func isCompatible(with other: ValueType) -> Bool {
        self == .any || other == .any || self == other
    }

    public var description: String { rawValue }
}

extension Value: Codable {
    /// JSON form: null, true/false, numbers, strings, arrays; bytes as `{"bytes":[...]}` and
    /// unsigned integers above `Int64.max` as `{"uint":N}`.
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
        throw DecodingError.dataCorruptedError(
            in: c, debugDescription: "expected null, bool, number, string, array, {\"bytes\":[...]} or {\"uint\":N}")
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
        }
    }
}
