// JSONEncoder/JSONDecoder carry collective values between processes (remote shards) and into
// checkpoints; in-process shards pass values without encoding.
import Foundation
import SpindleKernel

/// A per-tick allreduce: shards contribute values during a tick, the runner combines them in
/// shard-id order after the tick's Decay, and every shard reads the result in the next tick's
/// Sense (`ShardContext.reduced(_:)`).
///
/// ```swift
/// let agents = Collective<Int>.sum("agents")
/// // in a shard's decay:  context.contribute(myAgents.count, to: agents)
/// // in the next sense:   let total = context.reduced(agents)     // same on every shard
/// ```
/// Register every collective in `RunnerConfiguration.collectives` (remote shards' values are
/// decoded with it). `combine` must be associative; it need not be commutative, because the
/// runner always folds contributions in increasing shard order — so the result is the same
/// for every shard count and placement whenever the contributions partition the same values.
public struct Collective<Value: Codable & Sendable>: Sendable {
    /// The name shards and the runner know the collective by (unique among a runner's collectives).
    public let name: String
    /// Folds two values; must be associative.
    public let combine: @Sendable (Value, Value) -> Value

    /// A collective combining values with `combine`.
    public init(_ name: String, combine: @escaping @Sendable (Value, Value) -> Value) {
        self.name = name
        self.combine = combine
    }

    /// The collective with its value type erased, for `RunnerConfiguration.collectives`.
    public var erased: AnyCollective { AnyCollective(self) }
}

extension Collective where Value: AdditiveArithmetic {
    /// The sum of the contributions.
    public static func sum(_ name: String) -> Collective { Collective(name) { $0 + $1 } }
}

extension Collective where Value: FixedWidthInteger {
    /// The wrapping sum of the contributions (never traps on overflow).
    public static func sum(_ name: String) -> Collective { Collective(name) { $0 &+ $1 } }
}

extension Collective where Value: Comparable {
    /// The smallest contribution.
    public static func min(_ name: String) -> Collective { Collective(name) { Swift.min($0, $1) } }
    /// The largest contribution.
    public static func max(_ name: String) -> Collective { Collective(name) { Swift.max($0, $1) } }
}

/// A collective whose value type is erased, as the runner keeps it.
public struct AnyCollective: Sendable, CustomStringConvertible {
    public let name: String
    /// The value type's name (for error messages).
    public let valueType: String
    let typeID: ObjectIdentifier
    let combine: @Sendable (any Sendable, any Sendable) -> (any Sendable)?
    let encode: @Sendable (any Sendable) throws -> [UInt8]
    let decode: @Sendable ([UInt8]) throws -> any Sendable

    public init<Value>(_ collective: Collective<Value>) {
        name = collective.name
        valueType = "\(Value.self)"
        typeID = ObjectIdentifier(Value.self)
        let fold = collective.combine
        combine = { a, b in
            guard let x = a as? Value, let y = b as? Value else { return nil }
            return fold(x, y)
        }
        encode = { v in
            guard let value = v as? Value else { throw CollectiveCodingError(problem: "not a \(Value.self)") }
            return try CollectiveCoding.encode(value)
        }
        decode = { bytes in try CollectiveCoding.decode(Value.self, from: bytes) }
    }

    public var description: String { "collective \"\(name)\" of \(valueType)" }
}

/// The combined values of one tick's collectives, as shards see them in the next tick.
public struct CollectiveResults: Sendable {
    /// Values, by collective name (in-process).
    var values: [String: any Sendable] = [:]
    /// Encoded values, by collective name (on a shard server, or read from a checkpoint).
    var encoded: [String: [UInt8]] = [:]

    public init() {}

    /// Whether no collective has a result.
    public var isEmpty: Bool { values.isEmpty && encoded.isEmpty }

    /// The names of the collectives that have a result, in increasing order.
    public var names: [String] { Set(values.keys).union(encoded.keys).sorted() }

    /// The result of `collective`, if any shard contributed to it (and it has this type).
    public func value<Value>(of collective: Collective<Value>) -> Value? {
        if let v = values[collective.name] { return v as? Value }
        if let bytes = encoded[collective.name] { return try? CollectiveCoding.decode(Value.self, from: bytes) }
        return nil
    }

    /// Every result encoded with the registered collectives (for remote shards and checkpoints).
    func encodedAll(with registry: [String: AnyCollective]) throws -> [String: [UInt8]] {
        var out = encoded
        for (name, v) in values {
            guard let c = registry[name] else { throw CollectiveCodingError(problem: "collective \"\(name)\" is not registered") }
            out[name] = try c.encode(v)
        }
        return out
    }
}

/// A collective value that could not be encoded or decoded.
struct CollectiveCodingError: Error, CustomStringConvertible {
    var problem: String
    var description: String { problem }
}

enum CollectiveCoding {
    static func encode<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode([value]))
    }

    static func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value {
        let values = try JSONDecoder().decode([Value].self, from: Data(bytes))
        guard values.count == 1 else { throw CollectiveCodingError(problem: "expected one value, found \(values.count)") }
        return values[0]
    }
}

/// What one shard contributed to collectives in one tick.
///
/// `@unchecked Sendable` (and no dynamic exclusivity checks): written only by the thread
/// running the shard's phase (the runner never runs two phases of one shard at once) and read
/// by the runner after the phase's barrier, which orders the accesses.
final class ContributionSink: @unchecked Sendable {
    struct Entry {
        var name: String
        var typeID: ObjectIdentifier
        var value: any Sendable
        var encode: @Sendable () throws -> [UInt8]
    }
    @exclusivity(unchecked) private(set) var entries: [Entry] = []
    /// A contribution of another type to a name already contributed to (reported as a failure).
    @exclusivity(unchecked) private(set) var conflict: String?

    /// Whether nothing was contributed (and nothing conflicts).
    var isEmpty: Bool { entries.isEmpty && conflict == nil }

    func reset() {
        if !entries.isEmpty { entries.removeAll(keepingCapacity: true) }
        if conflict != nil { conflict = nil }
    }

    func add<Value>(_ value: Value, to collective: Collective<Value>) {
        let id = ObjectIdentifier(Value.self)
        if let i = entries.firstIndex(where: { $0.name == collective.name }) {
            guard entries[i].typeID == id, let old = entries[i].value as? Value else {
                conflict = "contributions of two types to \"\(collective.name)\" in one tick"
                return
            }
            // Several contributions of one shard fold in the order they were made.
            let combined = collective.combine(old, value)
            entries[i].value = combined
            entries[i].encode = { try CollectiveCoding.encode(combined) }
        } else {
            entries.append(Entry(name: collective.name, typeID: id, value: value,
                                 encode: { try CollectiveCoding.encode(value) }))
        }
    }
}
