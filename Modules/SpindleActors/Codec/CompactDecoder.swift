/// Decodes values `CompactEncoder` encoded.
///
/// Total: any bytes give the value or a `DecodingError` naming the byte offset and coding path,
/// never a trap. Nesting deeper than `maximumDepth` containers is refused, so a hostile
/// payload for a recursive type cannot exhaust the stack.
public struct CompactDecoder: Sendable {
    /// Values `Decodable` implementations can read (`Decoder.userInfo`), e.g. the actor system
    /// under `CodingUserInfoKey.actorSystemKey`.
    public var userInfo: [CodingUserInfoKey: any Sendable]
    /// The deepest nesting of containers accepted.
    public var maximumDepth: Int

    public init(userInfo: [CodingUserInfoKey: any Sendable] = [:], maximumDepth: Int = 256) {
        self.userInfo = userInfo
        self.maximumDepth = maximumDepth
    }

    /// Decodes one value that fills `bytes` exactly.
    /// - Throws: `DecodingError` when the bytes are not an encoding of `type`.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try decode(type, from: bytes, range: 0..<bytes.count)
    }

    /// Decodes one value that fills `range` of `bytes` exactly.
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], range: Range<Int>) throws -> T {
        var r = BinaryReader(bytes, range: range)
        let slot: CompactSlot
        do {
            slot = try CompactSlot.read(&r)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: error.description))
        }
        guard r.isAtEnd else {
            throw DecodingError.dataCorrupted(.init(codingPath: [],
                debugDescription: "at byte \(r.offset): \(r.remaining) bytes after the value"))
        }
        let state = CompactDecodingState(bytes: bytes, userInfo: userInfo, maximumDepth: maximumDepth)
        return try state.decodeValue(type, slot: slot, codingPath: [], depth: 0)
    }
}

/// One framed element: nil, or the range of its payload.
enum CompactSlot {
    case null(at: Int)
    case payload(Range<Int>)

    static func read(_ r: inout BinaryReader) throws(BinaryReadError) -> CompactSlot {
        let at = r.offset
        let tag = try r.varint()
        if tag == 0 { return .null(at: at) }
        guard tag - 1 <= UInt64(r.remaining) else {
            throw BinaryReadError(offset: at, problem: "element of \(tag - 1) bytes runs past the end (\(r.remaining) left)")
        }
        let n = Int(tag - 1)
        let start = r.offset
        try r.skip(n)
        return .payload(start..<(start + n))
    }

    var offset: Int {
        switch self {
        case .null(let at): return at
        case .payload(let r): return r.lowerBound
        }
    }
}

/// What every level of one decoding shares.
final class CompactDecodingState: Sendable {
    let bytes: [UInt8]
    let userInfo: [CodingUserInfoKey: any Sendable]
    let maximumDepth: Int

    init(bytes: [UInt8], userInfo: [CodingUserInfoKey: any Sendable], maximumDepth: Int) {
        self.bytes = bytes
        self.userInfo = userInfo
        self.maximumDepth = maximumDepth
    }

    func corrupted(_ path: [any CodingKey], at offset: Int, _ problem: String) -> DecodingError {
        .dataCorrupted(.init(codingPath: path, debugDescription: "at byte \(offset): \(problem)"))
    }

    func payload(_ slot: CompactSlot, _ path: [any CodingKey], _ what: String) throws -> Range<Int> {
        switch slot {
        case .payload(let r): return r
        case .null(let at):
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: path,
                debugDescription: "at byte \(at): expected \(what), found nil"))
        }
    }

    /// Decodes any value from `slot`: leaf types directly, others through their `init(from:)`.
    func decodeValue<T: Decodable>(_ type: T.Type, slot: CompactSlot, codingPath: [any CodingKey], depth: Int) throws -> T {
        if let leaf = try decodeLeaf(type, slot: slot, codingPath: codingPath) { return leaf }
        guard depth < maximumDepth else {
            throw corrupted(codingPath, at: slot.offset, "nesting deeper than \(maximumDepth) levels")
        }
        return try T(from: CompactDecodingCore(state: self, slot: slot, codingPath: codingPath, depth: depth + 1))
    }

    /// The common leaf types without a decoder object; nil for other types.
    private func decodeLeaf<T>(_ type: T.Type, slot: CompactSlot, codingPath: [any CodingKey]) throws -> T? {
        if T.self == Int.self { return try int(Int.self, slot, codingPath) as? T }
        if T.self == [UInt8].self { return Array(bytes[try payload(slot, codingPath, "bytes")]) as? T }
        if T.self == String.self { return try string(slot, codingPath) as? T }
        if T.self == Bool.self { return try bool(slot, codingPath) as? T }
        if T.self == Double.self { return try double(slot, codingPath) as? T }
        if T.self == UInt64.self { return try uint(UInt64.self, slot, codingPath) as? T }
        if T.self == Int64.self { return try int(Int64.self, slot, codingPath) as? T }
        return nil
    }

    // MARK: Primitives

    func bool(_ slot: CompactSlot, _ path: [any CodingKey]) throws -> Bool {
        let r = try payload(slot, path, "a Bool")
        guard r.count == 1, bytes[r.lowerBound] <= 1 else {
            throw corrupted(path, at: r.lowerBound, "a Bool is one byte, 0 or 1")
        }
        return bytes[r.lowerBound] == 1
    }

    func string(_ slot: CompactSlot, _ path: [any CodingKey]) throws -> String {
        let r = try payload(slot, path, "a String")
        guard let s = String(validating: bytes[r], as: UTF8.self) else {
            throw corrupted(path, at: r.lowerBound, "a String that is not valid UTF-8")
        }
        return s
    }

    func int<I: FixedWidthInteger & SignedInteger>(_ type: I.Type, _ slot: CompactSlot, _ path: [any CodingKey]) throws -> I {
        let r = try payload(slot, path, "\(I.self)")
        var reader = BinaryReader(bytes, range: r)
        let v: Int64
        do { v = try reader.signedVarint() } catch { throw corrupted(path, at: error.offset, error.problem) }
        guard reader.isAtEnd else { throw corrupted(path, at: reader.offset, "bytes after the \(I.self)") }
        guard let i = I(exactly: v) else { throw corrupted(path, at: r.lowerBound, "\(v) does not fit \(I.self)") }
        return i
    }

    func uint<U: FixedWidthInteger & UnsignedInteger>(_ type: U.Type, _ slot: CompactSlot, _ path: [any CodingKey]) throws -> U {
        let r = try payload(slot, path, "\(U.self)")
        var reader = BinaryReader(bytes, range: r)
        let v: UInt64
        do { v = try reader.varint() } catch { throw corrupted(path, at: error.offset, error.problem) }
        guard reader.isAtEnd else { throw corrupted(path, at: reader.offset, "bytes after the \(U.self)") }
        guard let u = U(exactly: v) else { throw corrupted(path, at: r.lowerBound, "\(v) does not fit \(U.self)") }
        return u
    }

    private func fixed(_ slot: CompactSlot, _ path: [any CodingKey], size: Int, _ what: String) throws -> BinaryReader {
        let r = try payload(slot, path, what)
        guard r.count == size else { throw corrupted(path, at: r.lowerBound, "\(what) takes \(size) bytes, found \(r.count)") }
        return BinaryReader(bytes, range: r)
    }

    func double(_ slot: CompactSlot, _ path: [any CodingKey]) throws -> Double {
        var r = try fixed(slot, path, size: 8, "a Double")
        return Double(bitPattern: try r.fixed64())
    }

    func float(_ slot: CompactSlot, _ path: [any CodingKey]) throws -> Float {
        var r = try fixed(slot, path, size: 4, "a Float")
        return Float(bitPattern: try r.fixed32())
    }

    func uint128(_ slot: CompactSlot, _ path: [any CodingKey]) throws -> UInt128 {
        var r = try fixed(slot, path, size: 16, "a 128-bit integer")
        let low = try r.fixed64()
        let high = try r.fixed64()
        return UInt128(high) << 64 | UInt128(low)
    }
}

/// The `Decoder` handed to `init(from:)`: one slot of the payload.
struct CompactDecodingCore: Decoder {
    let state: CompactDecodingState
    let slot: CompactSlot
    let codingPath: [any CodingKey]
    let depth: Int
    var userInfo: [CodingUserInfoKey: Any] { state.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(try CompactKeyedDecoding<Key>(self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try CompactUnkeyedDecoding(self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        CompactSingleValueDecoding(state: state, slot: slot, codingPath: codingPath, depth: depth)
    }
}

struct CompactSingleValueDecoding: SingleValueDecodingContainer {
    let state: CompactDecodingState
    let slot: CompactSlot
    let codingPath: [any CodingKey]
    let depth: Int

    func decodeNil() -> Bool {
        if case .null = slot { return true }
        return false
    }
    func decode(_ type: Bool.Type) throws -> Bool { try state.bool(slot, codingPath) }
    func decode(_ type: String.Type) throws -> String { try state.string(slot, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try state.double(slot, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try state.float(slot, codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try state.int(type, slot, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try state.int(type, slot, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try state.int(type, slot, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try state.int(type, slot, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try state.int(type, slot, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try state.uint(type, slot, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try state.uint(type, slot, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try state.uint(type, slot, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try state.uint(type, slot, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try state.uint(type, slot, codingPath) }
    func decode(_ type: UInt128.Type) throws -> UInt128 { try state.uint128(slot, codingPath) }
    func decode(_ type: Int128.Type) throws -> Int128 { Int128(bitPattern: try state.uint128(slot, codingPath)) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        // The same slot, one level deeper: a wrapper type decoding its wrapped value.
        try state.decodeValue(type, slot: slot, codingPath: codingPath, depth: depth)
    }
}

struct CompactKeyedDecoding<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let state: CompactDecodingState
    let codingPath: [any CodingKey]
    let depth: Int
    private let slots: [String: CompactSlot]
    private let order: [String]
    let payloadStart: Int

    init(_ d: CompactDecodingCore) throws {
        state = d.state
        codingPath = d.codingPath
        depth = d.depth
        let range = try d.state.payload(d.slot, d.codingPath, "a keyed container")
        payloadStart = range.lowerBound
        var r = BinaryReader(d.state.bytes, range: range)
        var slots: [String: CompactSlot] = [:]
        var order: [String] = []
        do throws(BinaryReadError) {
            // Each entry takes at least two bytes (an empty key and a nil element).
            let n = try r.count("entry count", bytesEach: 2)
            slots.reserveCapacity(n)
            order.reserveCapacity(n)
            for _ in 0..<n {
                let at = r.offset
                let key = try r.string()
                let slot = try CompactSlot.read(&r)
                guard slots.updateValue(slot, forKey: key) == nil else {
                    throw BinaryReadError(offset: at, problem: "key \"\(key)\" appears twice")
                }
                order.append(key)
            }
        } catch {
            throw d.state.corrupted(d.codingPath, at: error.offset, error.problem)
        }
        guard r.isAtEnd else { throw d.state.corrupted(d.codingPath, at: r.offset, "bytes after the last entry") }
        self.slots = slots
        self.order = order
    }

    var allKeys: [Key] { order.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { slots[key.stringValue] != nil }

    private func slot(_ key: Key) throws -> CompactSlot {
        guard let s = slots[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath,
                debugDescription: "at byte \(payloadStart): no value for key \"\(key.stringValue)\""))
        }
        return s
    }

    private func single(_ key: Key) throws -> CompactSingleValueDecoding {
        CompactSingleValueDecoding(state: state, slot: try slot(key), codingPath: codingPath + [key], depth: depth)
    }

    func decodeNil(forKey key: Key) throws -> Bool { try single(key).decodeNil() }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try single(key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try single(key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try single(key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try single(key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try single(key).decode(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try single(key).decode(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try single(key).decode(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try single(key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try single(key).decode(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try single(key).decode(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try single(key).decode(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try single(key).decode(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try single(key).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try single(key).decode(type) }
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try single(key).decode(type) }
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try single(key).decode(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try state.decodeValue(type, slot: try slot(key), codingPath: codingPath + [key], depth: depth)
    }

    private func nested(_ key: Key) throws -> CompactDecodingCore {
        guard depth < state.maximumDepth else {
            throw state.corrupted(codingPath, at: payloadStart, "nesting deeper than \(state.maximumDepth) levels")
        }
        return CompactDecodingCore(state: state, slot: try slot(key), codingPath: codingPath + [key], depth: depth + 1)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try nested(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try nested(key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        guard let s = slots["super"] else {
            throw DecodingError.keyNotFound(IndexKey(0), .init(codingPath: codingPath, debugDescription: "no super value"))
        }
        return CompactDecodingCore(state: state, slot: s, codingPath: codingPath, depth: depth + 1)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder { try nested(key) }
}

struct CompactUnkeyedDecoding: UnkeyedDecodingContainer {
    let state: CompactDecodingState
    let codingPath: [any CodingKey]
    let depth: Int
    let count: Int?
    private(set) var currentIndex = 0
    private var reader: BinaryReader

    init(_ d: CompactDecodingCore) throws {
        state = d.state
        codingPath = d.codingPath
        depth = d.depth
        let range = try d.state.payload(d.slot, d.codingPath, "an unkeyed container")
        reader = BinaryReader(d.state.bytes, range: range)
        do {
            // Each element takes at least one byte.
            count = try reader.count("element count")
        } catch {
            throw d.state.corrupted(d.codingPath, at: error.offset, error.problem)
        }
    }

    var isAtEnd: Bool { currentIndex >= (count ?? 0) }

    private var path: [any CodingKey] { codingPath + [IndexKey(currentIndex)] }

    private mutating func nextSlot() throws -> CompactSlot {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: path,
                debugDescription: "at byte \(reader.offset): the container's \(count ?? 0) elements are used up"))
        }
        do {
            let s = try CompactSlot.read(&reader)
            currentIndex += 1
            return s
        } catch {
            throw state.corrupted(path, at: error.offset, error.problem)
        }
    }

    private mutating func single() throws -> CompactSingleValueDecoding {
        let p = path
        return CompactSingleValueDecoding(state: state, slot: try nextSlot(), codingPath: p, depth: depth)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        var probe = reader
        let tag: UInt64
        do { tag = try probe.varint() } catch { throw state.corrupted(path, at: error.offset, error.problem) }
        guard tag == 0 else { return false }
        reader = probe
        currentIndex += 1
        return true
    }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try single().decode(type) }
    mutating func decode(_ type: String.Type) throws -> String { try single().decode(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try single().decode(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try single().decode(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try single().decode(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try single().decode(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try single().decode(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try single().decode(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try single().decode(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try single().decode(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try single().decode(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try single().decode(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try single().decode(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try single().decode(type) }
    mutating func decode(_ type: Int128.Type) throws -> Int128 { try single().decode(type) }
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 { try single().decode(type) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let p = path
        return try state.decodeValue(type, slot: try nextSlot(), codingPath: p, depth: depth)
    }

    private mutating func nested() throws -> CompactDecodingCore {
        let p = path
        guard depth < state.maximumDepth else {
            throw state.corrupted(p, at: reader.offset, "nesting deeper than \(state.maximumDepth) levels")
        }
        return CompactDecodingCore(state: state, slot: try nextSlot(), codingPath: p, depth: depth + 1)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try nested().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try nested().unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder { try nested() }
}
