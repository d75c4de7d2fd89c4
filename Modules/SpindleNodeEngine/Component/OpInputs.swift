/// The input values an op fires with, by port index (its order in the op's signature) or by
/// port name, raw or decoded into a `Decodable` type:
///
/// ```swift
/// let order = try inputs.value(of: Order.self, at: "order")
/// ```
///
/// Up to four inputs are stored inline, so firing an op does not allocate.
public struct OpInputs: Sendable {
    @usableFromInline var v0: Value?
    @usableFromInline var v1: Value?
    @usableFromInline var v2: Value?
    @usableFromInline var v3: Value?
    @usableFromInline var more: [Value?]
    /// Number of input ports.
    public let count: Int
    /// The op's name and port names (nil for inputs built by hand).
    let ports: PortNames?

    @inlinable
    init(count: Int) {
        self.init(count: count, ports: nil)
    }

    @usableFromInline
    init(count: Int, ports: PortNames?) {
        self.count = count
        self.ports = ports
        more = []
        if count > 4 { more = Array(repeating: nil, count: count - 4) }
    }

    /// A single input (port 0).
    public init(_ value: Value) {
        self.init(count: 1)
        v0 = value
    }

    /// Inputs by port name, for calling a component's `dispatch` directly (in tests): the
    /// ports are those of `signature`, in its order.
    /// - Throws: `InputBindingError.unknownPort` for a name the signature does not declare.
    public init(_ values: [String: Value], for signature: OpSignature) throws(InputBindingError) {
        let names = PortNames(op: signature.name, names: signature.inputs.map(\.name))
        self.init(count: names.names.count, ports: names)
        for (port, value) in values {
            guard let i = names.index(of: port) else {
                throw .unknownPort(op: signature.name, port: port, declared: names.names)
            }
            self[i] = value
        }
    }

    /// The value at input port `port`, or nil when the port was not filled (optional or
    /// any-of) or is not declared.
    public subscript(port: String) -> Value? {
        guard let i = ports?.index(of: port) else { return nil }
        return self[i]
    }

    /// The value at input port `port`.
    /// - Throws: `InputBindingError.unknownPort` when the op has no such port, `.missing`
    ///   when it was not filled.
    public func value(at port: String) throws(InputBindingError) -> Value {
        guard let names = ports else { throw .unknownPort(op: "?", port: port, declared: []) }
        guard let i = names.index(of: port) else { throw .unknownPort(op: names.op, port: port, declared: names.names) }
        guard let v = self[i] else { throw .missing(op: names.op, port: port) }
        return v
    }

    /// The value at input port `port` decoded as a `T`.
    /// - Throws: `InputBindingError` naming the op and port: unknown, missing, or
    ///   `.typeMismatch` with the decoding error (which names the field).
    public func value<T: Decodable>(of type: T.Type, at port: String) throws(InputBindingError) -> T {
        let v = try value(at: port)
        do {
            return try v.decode(type)
        } catch {
            throw .typeMismatch(op: ports?.op ?? "?", port: port, expected: String(describing: type), error)
        }
    }

    /// Like `value(of:at:)`, but nil when the port was not filled.
    public func valueIfPresent<T: Decodable>(of type: T.Type, at port: String) throws(InputBindingError) -> T? {
        do {
            return try value(of: type, at: port)
        } catch {
            if case .missing = error { return nil }
            throw error
        }
    }

    /// The value at port `index`, or nil when the port was not filled (optional or any-of).
    @inlinable
    public subscript(index: Int) -> Value? {
        get {
            switch index {
            case 0: return v0
            case 1: return v1
            case 2: return v2
            case 3: return v3
            default: return index < count ? more[index - 4] : nil
            }
        }
        set {
            switch index {
            case 0: v0 = newValue
            case 1: v1 = newValue
            case 2: v2 = newValue
            case 3: v3 = newValue
            default: more[index - 4] = newValue
            }
        }
    }

    /// The first filled input (what any-of ops read).
    public var first: Value? {
        for i in 0..<count { if let v = self[i] { return v } }
        return nil
    }
}

/// The output values of an op, by port index (its order in the op's signature); a port left
/// nil writes nothing. Up to four outputs are stored inline.
public struct OpOutputs: Sendable {
    @usableFromInline var v0: Value?
    @usableFromInline var v1: Value?
    @usableFromInline var v2: Value?
    @usableFromInline var v3: Value?
    @usableFromInline var more: [Value?]
    @usableFromInline var _count: Int
    /// Highest port index set plus one.
    public var count: Int { _count }

    /// No outputs (absorb).
    @inlinable
    public init() {
        _count = 0
        more = []
    }

    /// One output on port 0.
    @inlinable
    public init(_ value: Value) {
        _count = 1
        more = []
        v0 = value
    }

    /// Outputs on ports 0, 1, … in order.
    public init(_ values: [Value]) {
        self.init()
        for (i, v) in values.enumerated() { self[i] = v }
    }

    /// One output on port 0: `value` converted with `ValueEncoder`.
    public init<T: Encodable>(encoding value: T) throws(ValueCodingError) {
        self.init(try Value(encoding: value))
    }

    public var isEmpty: Bool { count == 0 }

    @inlinable
    public subscript(index: Int) -> Value? {
        get {
            switch index {
            case 0: return v0
            case 1: return v1
            case 2: return v2
            case 3: return v3
            default: return index - 4 < more.count ? more[index - 4] : nil
            }
        }
        set {
            switch index {
            case 0: v0 = newValue
            case 1: v1 = newValue
            case 2: v2 = newValue
            case 3: v3 = newValue
            default:
                while more.count <= index - 4 { more.append(nil) }
                more[index - 4] = newValue
            }
            if newValue != nil, index >= _count { _count = index + 1 }
        }
    }

    /// Total wire size of the values (for result-size caps).
    var byteCount: Int {
        var n = 0
        for i in 0..<count { n += self[i]?.byteCount ?? 0 }
        return n
    }
}

/// The name and input port names of an installed op, shared by every `OpInputs` it fires with.
@usableFromInline
final class PortNames: Sendable {
    let op: String
    let names: [String]

    init(op: String, names: [String]) {
        self.op = op
        self.names = names
    }

    func index(of port: String) -> Int? { names.firstIndex(of: port) }
}

/// A component read an input that does not exist, was not filled, or does not decode as the
/// type it asked for; names the op and the port.
public enum InputBindingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The op has no input port of that name.
    case unknownPort(op: String, port: String, declared: [String])
    /// The port exists but was not filled (an optional or any-of port).
    case missing(op: String, port: String)
    /// The value does not decode as the requested type.
    case typeMismatch(op: String, port: String, expected: String, ValueCodingError)

    public var description: String {
        switch self {
        case .unknownPort(let op, let port, let declared):
            return "op `\(op)` has no input port `\(port)` (its ports: \(declared.joined(separator: ", ")))"
        case .missing(let op, let port): return "op `\(op)`: input port `\(port)` was not filled"
        case .typeMismatch(let op, let port, let expected, let error):
            return "op `\(op)`, input port `\(port)`: not a \(expected): \(error)"
        }
    }
}
