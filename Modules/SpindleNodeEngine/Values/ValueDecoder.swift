import OrderedCollections

/// Converts `Value`s back to `Decodable` types: the inverse of `ValueEncoder`.
///
/// Integers convert between `int` and `uint` when the number fits the target type; floating
/// point accepts `int` and `uint` too; a missing record field or `unit` decodes as `nil`.
/// Anything else that does not fit is a `ValueCodingError` naming the path and both types.
public struct ValueDecoder: Sendable {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: Value) throws(ValueCodingError) -> T {
        do {
            return try BoxDecoder.decode(type, from: value, at: [])
        } catch {
            throw ValueCodingError.from(error, at: [])
        }
    }
}

extension Value {
    /// This value as a `T` (see `ValueDecoder`).
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws(ValueCodingError) -> T {
        try ValueDecoder().decode(type, from: self)
    }

    /// The type name used in decoding errors.
    var typeName: String { type.rawValue }
}

struct BoxDecoder: Decoder {
    let value: Value
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    static func decode<T: Decodable>(_ type: T.Type, from value: Value, at path: [any CodingKey]) throws -> T {
        if T.self == Value.self { return value as! T }
        if T.self == [UInt8].self, case .bytes(let b) = value { return b as! T }
        return try T(from: BoxDecoder(value: value, codingPath: path))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .record(let fields) = value else {
            throw ValueCodingError(codingPath, "expected a record, found \(value.typeName) \(value)")
        }
        return KeyedDecodingContainer(KeyedBoxDecoder<Key>(fields: fields, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        switch value {
        case .list(let items): return UnkeyedBoxDecoder(items: items, codingPath: codingPath)
        case .bytes(let b): return UnkeyedBoxDecoder(items: b.map { .uint(UInt64($0)) }, codingPath: codingPath)
        default: throw ValueCodingError(codingPath, "expected a list, found \(value.typeName) \(value)")
        }
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleBoxDecoder(value: value, codingPath: codingPath)
    }
}

/// Scalar conversions with errors that name the path and the types.
enum Unbox {
    static func bool(_ v: Value, _ path: [any CodingKey]) throws -> Bool {
        guard case .bool(let b) = v else { throw mismatch("bool", v, path) }
        return b
    }

    static func string(_ v: Value, _ path: [any CodingKey]) throws -> String {
        guard case .string(let s) = v else { throw mismatch("string", v, path) }
        return s
    }

    static func integer<T: FixedWidthInteger>(_ v: Value, _ path: [any CodingKey]) throws -> T {
        let result: T?
        switch v {
        case .int(let i): result = T(exactly: i)
        case .uint(let u): result = T(exactly: u)
        default: throw mismatch(T.isSigned ? "int" : "uint", v, path)
        }
        guard let result else { throw ValueCodingError(path, "\(v) does not fit \(T.self)") }
        return result
    }

    static func double(_ v: Value, _ path: [any CodingKey]) throws -> Double {
        switch v {
        case .double(let d): return d
        case .int(let i): return Double(i)
        case .uint(let u): return Double(u)
        default: throw mismatch("double", v, path)
        }
    }

    static func mismatch(_ expected: String, _ v: Value, _ path: [any CodingKey]) -> ValueCodingError {
        ValueCodingError(path, "expected \(expected), found \(v.typeName) \(v)")
    }
}

struct KeyedBoxDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let fields: OrderedDictionary<String, Value>
    let codingPath: [any CodingKey]

    var allKeys: [Key] { fields.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { fields[key.stringValue] != nil }

    private func field(_ key: Key) throws -> Value {
        guard let v = fields[key.stringValue] else {
            throw ValueCodingError(codingPath + [key], "missing field `\(key.stringValue)`")
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        guard let v = fields[key.stringValue] else { return true }
        return v == .unit
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try Unbox.bool(field(key), codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try Unbox.string(field(key), codingPath + [key]) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try Unbox.double(field(key), codingPath + [key]) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { Float(try Unbox.double(field(key), codingPath + [key])) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try Unbox.integer(field(key), codingPath + [key]) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try Unbox.integer(field(key), codingPath + [key]) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try BoxDecoder.decode(type, from: field(key), at: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type,
                                               forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try BoxDecoder(value: field(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try BoxDecoder(value: field(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        BoxDecoder(value: fields["super"] ?? .unit, codingPath: codingPath + [FieldKey("super")])
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        BoxDecoder(value: fields[key.stringValue] ?? .unit, codingPath: codingPath + [key])
    }
}

struct UnkeyedBoxDecoder: UnkeyedDecodingContainer {
    let items: [Value]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(items: [Value], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private mutating func next() throws -> (Value, [any CodingKey]) {
        let path = codingPath + [IndexKey(currentIndex)]
        guard currentIndex < items.count else {
            throw ValueCodingError(path, "the list has only \(items.count) values")
        }
        defer { currentIndex += 1 }
        return (items[currentIndex], path)
    }

    mutating func decodeNil() throws -> Bool {
        guard currentIndex < items.count else { return true }
        if items[currentIndex] == .unit {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { let (v, p) = try next(); return try Unbox.bool(v, p) }
    mutating func decode(_ type: String.Type) throws -> String { let (v, p) = try next(); return try Unbox.string(v, p) }
    mutating func decode(_ type: Double.Type) throws -> Double { let (v, p) = try next(); return try Unbox.double(v, p) }
    mutating func decode(_ type: Float.Type) throws -> Float { let (v, p) = try next(); return Float(try Unbox.double(v, p)) }
    mutating func decode(_ type: Int.Type) throws -> Int { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { let (v, p) = try next(); return try Unbox.integer(v, p) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { let (v, p) = try next(); return try Unbox.integer(v, p) }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, p) = try next()
        return try BoxDecoder.decode(type, from: v, at: p)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, p) = try next()
        return try BoxDecoder(value: v, codingPath: p).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (v, p) = try next()
        return try BoxDecoder(value: v, codingPath: p).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let (v, p) = try next()
        return BoxDecoder(value: v, codingPath: p)
    }
}

struct SingleBoxDecoder: SingleValueDecodingContainer {
    let value: Value
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { value == .unit }
    func decode(_ type: Bool.Type) throws -> Bool { try Unbox.bool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try Unbox.string(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try Unbox.double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try Unbox.double(value, codingPath)) }
    func decode(_ type: Int.Type) throws -> Int { try Unbox.integer(value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try Unbox.integer(value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try Unbox.integer(value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try Unbox.integer(value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try Unbox.integer(value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try Unbox.integer(value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try Unbox.integer(value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try Unbox.integer(value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try Unbox.integer(value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try Unbox.integer(value, codingPath) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try BoxDecoder.decode(type, from: value, at: codingPath)
    }
}
