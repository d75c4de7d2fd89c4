/// Encodes `Encodable` values into Spindle's compact binary form: the encoding the actor
/// system uses for arguments, results and errors.
///
/// The form is not self-describing (both ends know the type) but every value is framed, so a
/// decoder can skip fields and tell `nil` from a value:
///
/// ```
/// element  = varint(0)                      nil
///          | varint(n + 1) payload[n]       a value of n bytes
/// payload  = primitive | keyed | unkeyed
/// keyed    = varint(count) (varint(keyLength) keyUTF8 element)*
/// unkeyed  = varint(count) element*
/// ```
/// Primitives: `Bool` one byte; signed integers zigzag LEB128, unsigned LEB128; `Float`/`Double`
/// their IEEE bits little endian; `String` its UTF-8 bytes; `[UInt8]` its bytes as they are.
/// The encoded value is one element. An `Int` such as 41 takes 2 bytes, a struct
/// `{ count: 41 }` 10 (JSON: 12), a `[UInt8]` of 64 bytes 65 (JSON: about 200).
/// docs/actors.md ("Wire format") has the full description.
public struct CompactEncoder: Sendable {
    /// Values `Encodable` implementations can read (`Encoder.userInfo`).
    public var userInfo: [CodingUserInfoKey: any Sendable]

    public init(userInfo: [CodingUserInfoKey: any Sendable] = [:]) {
        self.userInfo = userInfo
    }

    /// The value's encoding.
    /// - Throws: `EncodingError` when the value's `encode(to:)` throws or encodes nothing
    ///   coherent (two kinds of container at one level).
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var w = BinaryWriter(capacity: 32)
        try encode(value, into: &w)
        return w.bytes
    }

    /// Appends the value's encoding (one element) to `writer`.
    func encode<T: Encodable>(_ value: T, into writer: inout BinaryWriter) throws {
        if let fast = CompactPrimitive.encodeFast(value) {
            writer.varint(UInt64(fast.count) + 1)
            writer.bytes.append(contentsOf: fast)
            return
        }
        let node = EncodingNode()
        try value.encode(to: CompactEncodingCore(node: node, codingPath: [], userInfo: userInfo))
        try node.writeElement(into: &writer, codingPath: [])
    }
}

/// The payload encodings of the primitives (see `CompactEncoder`).
enum CompactPrimitive {
    static func signed(_ v: Int64) -> [UInt8] {
        var w = BinaryWriter(capacity: 10)
        w.signedVarint(v)
        return w.bytes
    }

    static func unsigned(_ v: UInt64) -> [UInt8] {
        var w = BinaryWriter(capacity: 10)
        w.varint(v)
        return w.bytes
    }

    static func double(_ v: Double) -> [UInt8] {
        var w = BinaryWriter(capacity: 8)
        w.fixed64(v.bitPattern)
        return w.bytes
    }

    static func float(_ v: Float) -> [UInt8] {
        var w = BinaryWriter(capacity: 4)
        w.fixed32(v.bitPattern)
        return w.bytes
    }

    static func string(_ s: String) -> [UInt8] { Array(s.utf8) }

    static func int128(high: UInt64, low: UInt64) -> [UInt8] {
        var w = BinaryWriter(capacity: 16)
        w.fixed64(low)
        w.fixed64(high)
        return w.bytes
    }

    /// The payload of the common leaf types, without building an encoding tree; nil for others.
    /// Compares types, not casts: `[] as? [UInt8]` succeeds for an empty array of any type.
    @inline(__always)
    static func encodeFast<T>(_ value: T) -> [UInt8]? {
        if T.self == Int.self { return signed(Int64(value as! Int)) }
        if T.self == [UInt8].self { return value as? [UInt8] }
        if T.self == String.self { return string(value as! String) }
        if T.self == Bool.self { return [(value as! Bool) ? 1 : 0] }
        if T.self == Double.self { return double(value as! Double) }
        if T.self == UInt64.self { return unsigned(value as! UInt64) }
        if T.self == Int64.self { return signed(value as! Int64) }
        return nil
    }
}

/// What one level of an encoding holds until it is written out.
final class EncodingNode {
    enum Kind { case empty, null, primitive, keyed, unkeyed }
    var kind = Kind.empty
    var bytes: [UInt8] = []
    /// Keyed: the key of each child, in encoding order.
    var keys: [String] = []
    var children: [EncodingNode] = []

    func setPrimitive(_ b: [UInt8], codingPath: [any CodingKey]) throws {
        guard kind == .empty || kind == .primitive || kind == .null else {
            throw EncodingError.invalidValue(b, .init(codingPath: codingPath,
                debugDescription: "a single value encoded where a container was already encoded"))
        }
        kind = .primitive
        bytes = b
    }

    func makeKeyed(codingPath: [any CodingKey]) -> Bool {
        switch kind {
        case .empty: kind = .keyed; return true
        case .keyed: return true
        default: return false
        }
    }

    func makeUnkeyed(codingPath: [any CodingKey]) -> Bool {
        switch kind {
        case .empty: kind = .unkeyed; return true
        case .unkeyed: return true
        default: return false
        }
    }

    func child(forKey key: String) -> EncodingNode {
        if let i = keys.lastIndex(of: key) { return children[i] }
        let n = EncodingNode()
        keys.append(key)
        children.append(n)
        return n
    }

    func appendChild() -> EncodingNode {
        let n = EncodingNode()
        children.append(n)
        return n
    }

    /// Writes this level as one element.
    func writeElement(into w: inout BinaryWriter, codingPath: [any CodingKey]) throws {
        if kind == .null {
            w.varint(0)
            return
        }
        var payload = BinaryWriter(capacity: kind == .primitive ? bytes.count : 32)
        try writePayload(into: &payload, codingPath: codingPath)
        w.varint(UInt64(payload.bytes.count) + 1)
        w.bytes.append(contentsOf: payload.bytes)
    }

    private func writePayload(into w: inout BinaryWriter, codingPath: [any CodingKey]) throws {
        switch kind {
        case .null:
            break
        case .primitive:
            w.bytes.append(contentsOf: bytes)
        case .empty:
            // Nothing encoded (a type with no stored properties): an empty keyed container.
            w.varint(0)
        case .keyed:
            w.varint(UInt64(children.count))
            for (key, child) in zip(keys, children) {
                w.string(key)
                try child.writeElement(into: &w, codingPath: codingPath)
            }
        case .unkeyed:
            w.varint(UInt64(children.count))
            for child in children { try child.writeElement(into: &w, codingPath: codingPath) }
        }
    }
}

/// The `Encoder` handed to `encode(to:)`; containers write into its node.
struct CompactEncodingCore: Encoder {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let userInfoStore: [CodingUserInfoKey: any Sendable]
    var userInfo: [CodingUserInfoKey: Any] { userInfoStore }

    init(node: EncodingNode, codingPath: [any CodingKey], userInfo: [CodingUserInfoKey: any Sendable]) {
        self.node = node
        self.codingPath = codingPath
        self.userInfoStore = userInfo
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        // A level that already holds a value of another kind is replaced: the Encoder protocol
        // gives no way to fail here, and the decoder would refuse the mix anyway.
        if !node.makeKeyed(codingPath: codingPath) {
            node.kind = .keyed
            node.keys = []
            node.children = []
        }
        return KeyedEncodingContainer(CompactKeyedEncoding<Key>(node: node, codingPath: codingPath, userInfo: userInfoStore))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if !node.makeUnkeyed(codingPath: codingPath) {
            node.kind = .unkeyed
            node.keys = []
            node.children = []
        }
        return CompactUnkeyedEncoding(node: node, codingPath: codingPath, userInfo: userInfoStore)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        CompactSingleValueEncoding(node: node, codingPath: codingPath, userInfo: userInfoStore)
    }
}

/// Encodes any value into `node` (a leaf fast path, or the value's own `encode(to:)`).
private func encodeValue<T: Encodable>(_ value: T, into node: EncodingNode, codingPath: [any CodingKey],
                                       userInfo: [CodingUserInfoKey: any Sendable]) throws {
    if let fast = CompactPrimitive.encodeFast(value) {
        try node.setPrimitive(fast, codingPath: codingPath)
        return
    }
    try value.encode(to: CompactEncodingCore(node: node, codingPath: codingPath, userInfo: userInfo))
}

struct CompactSingleValueEncoding: SingleValueEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let userInfo: [CodingUserInfoKey: any Sendable]

    mutating func encodeNil() throws {
        guard node.kind == .empty || node.kind == .null else {
            throw EncodingError.invalidValue(Optional<Int>.none as Any, .init(codingPath: codingPath,
                debugDescription: "nil encoded where a value was already encoded"))
        }
        node.kind = .null
    }
    mutating func encode(_ value: Bool) throws { try node.setPrimitive([value ? 1 : 0], codingPath: codingPath) }
    mutating func encode(_ value: String) throws { try node.setPrimitive(CompactPrimitive.string(value), codingPath: codingPath) }
    mutating func encode(_ value: Double) throws { try node.setPrimitive(CompactPrimitive.double(value), codingPath: codingPath) }
    mutating func encode(_ value: Float) throws { try node.setPrimitive(CompactPrimitive.float(value), codingPath: codingPath) }
    mutating func encode(_ value: Int) throws { try node.setPrimitive(CompactPrimitive.signed(Int64(value)), codingPath: codingPath) }
    mutating func encode(_ value: Int8) throws { try node.setPrimitive(CompactPrimitive.signed(Int64(value)), codingPath: codingPath) }
    mutating func encode(_ value: Int16) throws { try node.setPrimitive(CompactPrimitive.signed(Int64(value)), codingPath: codingPath) }
    mutating func encode(_ value: Int32) throws { try node.setPrimitive(CompactPrimitive.signed(Int64(value)), codingPath: codingPath) }
    mutating func encode(_ value: Int64) throws { try node.setPrimitive(CompactPrimitive.signed(value), codingPath: codingPath) }
    mutating func encode(_ value: UInt) throws { try node.setPrimitive(CompactPrimitive.unsigned(UInt64(value)), codingPath: codingPath) }
    mutating func encode(_ value: UInt8) throws { try node.setPrimitive(CompactPrimitive.unsigned(UInt64(value)), codingPath: codingPath) }
    mutating func encode(_ value: UInt16) throws { try node.setPrimitive(CompactPrimitive.unsigned(UInt64(value)), codingPath: codingPath) }
    mutating func encode(_ value: UInt32) throws { try node.setPrimitive(CompactPrimitive.unsigned(UInt64(value)), codingPath: codingPath) }
    mutating func encode(_ value: UInt64) throws { try node.setPrimitive(CompactPrimitive.unsigned(value), codingPath: codingPath) }
    mutating func encode(_ value: Int128) throws {
        let bits = UInt128(bitPattern: value)
        try node.setPrimitive(CompactPrimitive.int128(high: UInt64(truncatingIfNeeded: bits >> 64),
                                                      low: UInt64(truncatingIfNeeded: bits)), codingPath: codingPath)
    }
    mutating func encode(_ value: UInt128) throws {
        try node.setPrimitive(CompactPrimitive.int128(high: UInt64(truncatingIfNeeded: value >> 64),
                                                      low: UInt64(truncatingIfNeeded: value)), codingPath: codingPath)
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try encodeValue(value, into: node, codingPath: codingPath, userInfo: userInfo)
    }
}

struct CompactKeyedEncoding<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let userInfo: [CodingUserInfoKey: any Sendable]

    private func single(_ key: Key) -> CompactSingleValueEncoding {
        CompactSingleValueEncoding(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key], userInfo: userInfo)
    }

    mutating func encodeNil(forKey key: Key) throws { var s = single(key); try s.encodeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int128, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt128, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { var s = single(key); try s.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                       forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        CompactEncodingCore(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key], userInfo: userInfo)
            .container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        CompactEncodingCore(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key], userInfo: userInfo)
            .unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        CompactEncodingCore(node: node.child(forKey: "super"), codingPath: codingPath, userInfo: userInfo)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        CompactEncodingCore(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key], userInfo: userInfo)
    }
}

/// A coding key for positions in unkeyed containers (coding paths only).
struct IndexKey: CodingKey {
    var stringValue: String { "Index \(index)" }
    var intValue: Int? { index }
    let index: Int
    init(_ index: Int) { self.index = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { index = intValue }
}

struct CompactUnkeyedEncoding: UnkeyedEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let userInfo: [CodingUserInfoKey: any Sendable]
    var count: Int { node.children.count }

    private func next() -> CompactSingleValueEncoding {
        let path = codingPath + [IndexKey(node.children.count)]
        return CompactSingleValueEncoding(node: node.appendChild(), codingPath: path, userInfo: userInfo)
    }

    mutating func encodeNil() throws { var s = next(); try s.encodeNil() }
    mutating func encode(_ value: Bool) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: String) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Double) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Float) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int8) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int16) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int32) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int64) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt8) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt16) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt32) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt64) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int128) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt128) throws { var s = next(); try s.encode(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { var s = next(); try s.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = codingPath + [IndexKey(node.children.count)]
        return CompactEncodingCore(node: node.appendChild(), codingPath: path, userInfo: userInfo).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = codingPath + [IndexKey(node.children.count)]
        return CompactEncodingCore(node: node.appendChild(), codingPath: path, userInfo: userInfo).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let path = codingPath + [IndexKey(node.children.count)]
        return CompactEncodingCore(node: node.appendChild(), codingPath: path, userInfo: userInfo)
    }
}
