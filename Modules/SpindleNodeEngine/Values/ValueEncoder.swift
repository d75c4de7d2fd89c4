import OrderedCollections

/// Converts `Encodable` values to `Value`s: structs and classes become records (fields in
/// the order they are encoded), arrays lists, `nil` `unit`, integers `int` or `uint`,
/// floating point `double`, `[UInt8]` `bytes`; a `Value` stays itself.
///
/// ```swift
/// struct Order: Codable { var item: String; var quantity: Int; var note: String? }
/// let v = try Value(encoding: Order(item: "tea", quantity: 2, note: nil))
/// // {item: "tea", quantity: 2}
/// ```
public struct ValueEncoder: Sendable {
    public init() {}

    /// The value of `value`.
    /// - Throws: `ValueCodingError` when the type's `encode(to:)` fails, naming where.
    public func encode<T: Encodable>(_ value: T) throws(ValueCodingError) -> Value {
        do {
            return try EncodingBox.encode(value, at: [])
        } catch {
            throw ValueCodingError.from(error, at: [])
        }
    }
}

extension Value {
    /// The value of an `Encodable` (see `ValueEncoder`).
    public init<T: Encodable>(encoding value: T) throws(ValueCodingError) {
        self = try ValueEncoder().encode(value)
    }
}

/// What one encoder (or container slot) has produced so far.
final class EncodingBox {
    enum Storage {
        case empty
        case single(Value)
        case record(OrderedDictionary<String, EncodingBox>)
        case list([EncodingBox])
    }

    var storage: Storage = .empty

    init() {}
    init(_ value: Value) { storage = .single(value) }

    /// Encodes `value`, short-cutting the types with a direct form.
    static func encode<T: Encodable>(_ value: T, at path: [any CodingKey]) throws -> Value {
        if let v = value as? Value { return v }
        if let b = value as? [UInt8] { return .bytes(b) }
        let box = EncodingBox()
        try value.encode(to: BoxEncoder(box: box, codingPath: path))
        return box.resolve()
    }

    /// The value built in this box (an encoder that wrote nothing gives an empty record).
    func resolve() -> Value {
        switch storage {
        case .empty: return .record([:])
        case .single(let v): return v
        case .record(let fields):
            var r = OrderedDictionary<String, Value>(minimumCapacity: fields.count)
            for (k, b) in fields { r[k] = b.resolve() }
            return .record(r)
        case .list(let items): return .list(items.map { $0.resolve() })
        }
    }

    func becomeRecord() {
        if case .record = storage { return }
        storage = .record([:])
    }

    func becomeList() {
        if case .list = storage { return }
        storage = .list([])
    }

    func set(_ name: String, _ child: EncodingBox) {
        guard case .record(var fields) = storage else { return }
        storage = .empty
        fields[name] = child
        storage = .record(fields)
    }

    func append(_ child: EncodingBox) {
        guard case .list(var items) = storage else { return }
        storage = .empty
        items.append(child)
        storage = .list(items)
    }

    var count: Int {
        if case .list(let items) = storage { return items.count }
        return 0
    }
}

struct BoxEncoder: Encoder {
    let box: EncodingBox
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        box.becomeRecord()
        return KeyedEncodingContainer(KeyedBoxEncoder<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        box.becomeList()
        return UnkeyedBoxEncoder(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleBoxEncoder(box: box, codingPath: codingPath)
    }
}

/// Scalar conversions shared by the containers.
enum Scalar {
    static func of<T: BinaryInteger>(_ v: T) -> Value {
        T.isSigned ? .int(Int64(v)) : .uint(UInt64(v))
    }
}

struct KeyedBoxEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: EncodingBox
    let codingPath: [any CodingKey]

    private func put(_ v: Value, _ key: Key) { box.set(key.stringValue, EncodingBox(v)) }

    mutating func encodeNil(forKey key: Key) throws { put(.unit, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(.double(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(.double(Double(value)), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(Scalar.of(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(Scalar.of(value), key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        put(try EncodingBox.encode(value, at: codingPath + [key]), key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingBox()
        child.becomeRecord()
        box.set(key.stringValue, child)
        return KeyedEncodingContainer(KeyedBoxEncoder<NestedKey>(box: child, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = EncodingBox()
        child.becomeList()
        box.set(key.stringValue, child)
        return UnkeyedBoxEncoder(box: child, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        let child = EncodingBox()
        box.set("super", child)
        return BoxEncoder(box: child, codingPath: codingPath + [FieldKey("super")])
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = EncodingBox()
        box.set(key.stringValue, child)
        return BoxEncoder(box: child, codingPath: codingPath + [key])
    }
}

struct UnkeyedBoxEncoder: UnkeyedEncodingContainer {
    let box: EncodingBox
    let codingPath: [any CodingKey]
    var count: Int { box.count }

    private func put(_ v: Value) { box.append(EncodingBox(v)) }

    mutating func encodeNil() throws { put(.unit) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(.double(value)) }
    mutating func encode(_ value: Float) throws { put(.double(Double(value))) }
    mutating func encode(_ value: Int) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int8) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int16) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int32) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int64) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt8) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt16) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt32) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt64) throws { put(Scalar.of(value)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        put(try EncodingBox.encode(value, at: codingPath + [IndexKey(count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingBox()
        child.becomeRecord()
        let path = codingPath + [IndexKey(count)]
        box.append(child)
        return KeyedEncodingContainer(KeyedBoxEncoder<NestedKey>(box: child, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = EncodingBox()
        child.becomeList()
        let path = codingPath + [IndexKey(count)]
        box.append(child)
        return UnkeyedBoxEncoder(box: child, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let child = EncodingBox()
        let path = codingPath + [IndexKey(count)]
        box.append(child)
        return BoxEncoder(box: child, codingPath: path)
    }
}

struct SingleBoxEncoder: SingleValueEncodingContainer {
    let box: EncodingBox
    let codingPath: [any CodingKey]

    private func put(_ v: Value) { box.storage = .single(v) }

    mutating func encodeNil() throws { put(.unit) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(.double(value)) }
    mutating func encode(_ value: Float) throws { put(.double(Double(value))) }
    mutating func encode(_ value: Int) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int8) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int16) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int32) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: Int64) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt8) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt16) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt32) throws { put(Scalar.of(value)) }
    mutating func encode(_ value: UInt64) throws { put(Scalar.of(value)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        put(try EncodingBox.encode(value, at: codingPath))
    }
}
