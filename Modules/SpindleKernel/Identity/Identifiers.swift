import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The 128 bits behind every global identifier: 48 bits of wall-clock milliseconds, 16 bits
/// of a per-process generation counter, and 64 random bits.
///
/// Two processes that never talk produce different ids (the random half), and one process
/// produces ids that sort in generation order (time, then counter).
public struct RawID128: Hashable, Sendable, Comparable, Codable {
    public var high: UInt64
    public var low: UInt64

    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static func < (a: RawID128, b: RawID128) -> Bool {
        (a.high, a.low) < (b.high, b.low)
    }

    /// A new id, unique across processes and machines without coordination.
    public static func generate() -> RawID128 {
        IDGenerator.shared.next()
    }

    /// 32 lowercase hex digits.
    public var hex: String {
        hex16(high) + hex16(low)
    }

    /// Parses the 32-hex-digit form; nil when the text is not exactly that.
    public init?(hex text: Substring) {
        // Check the digits first: `UInt64(_:radix:)` alone would also accept a leading "+".
        guard text.utf8.count == 32, text.utf8.allSatisfy(isHexDigitASCII),
              let h = UInt64(text.prefix(16), radix: 16),
              let l = UInt64(text.suffix(16), radix: 16) else { return nil }
        self.init(high: h, low: l)
    }
}

private func isHexDigitASCII(_ c: UInt8) -> Bool {
    (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)
}

@usableFromInline
func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

/// Generates `RawID128`s: monotonic per process, random across processes.
final class IDGenerator: Sendable {
    static let shared = IDGenerator()

    private struct State {
        var lastMillis: UInt64 = 0
        var counter: UInt64 = 0
        var rng = SystemRandomNumberGenerator()
    }
    private let state = Mutex(State())

    func next() -> RawID128 {
        let now = SystemClock().wallNanoseconds() / 1_000_000
        return state.withLock { s in
            // Never go backwards inside one process, even when wall time steps back:
            // keep the last millisecond and count on.
            if now > s.lastMillis {
                s.lastMillis = now
                s.counter = 0
            } else {
                s.counter += 1
                if s.counter > 0xFFFF {
                    s.lastMillis += 1
                    s.counter = 0
                }
            }
            let high = (s.lastMillis & 0xFFFF_FFFF_FFFF) << 16 | s.counter
            return RawID128(high: high, low: s.rng.next())
        }
    }
}

/// An error parsing the textual form of an identifier.
public struct IdentifierParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of identifier that was expected (its prefix, e.g. "host").
    public var expected: String
    /// The text that did not parse.
    public var text: String
    /// What was wrong with it.
    public var problem: String

    public var description: String {
        "cannot parse \(expected) id from \"\(text)\": \(problem)"
    }
}

/// A typed 128-bit identifier, globally unique without coordination.
///
/// Its text form is `prefix-<32 hex digits>`, for example
/// `host-0190f3a2b4c50000a1b2c3d4e5f60718`, and parses back with `init(parsing:)`.
public protocol GlobalIdentifier: Hashable, Sendable, Comparable, Codable,
    CustomStringConvertible, LosslessStringConvertible
{
    static var prefix: String { get }
    var raw: RawID128 { get }
    init(raw: RawID128)
}

extension GlobalIdentifier {
    /// A fresh identifier.
    public static func generate() -> Self { Self(raw: .generate()) }

    public static func < (a: Self, b: Self) -> Bool { a.raw < b.raw }

    public var description: String { "\(Self.prefix)-\(raw.hex)" }

    public init?(_ description: String) {
        guard let v = try? Self(parsing: description) else { return nil }
        self = v
    }

    /// Parses `prefix-<32 hex>`; the error says which part was wrong.
    public init(parsing text: String) throws(IdentifierParseError) {
        let want = Self.prefix + "-"
        guard text.hasPrefix(want) else {
            throw IdentifierParseError(expected: Self.prefix, text: text,
                                       problem: "expected prefix \"\(want)\"")
        }
        let body = text.dropFirst(want.count)
        guard let raw = RawID128(hex: body) else {
            throw IdentifierParseError(expected: Self.prefix, text: text,
                                       problem: "expected 32 hex digits after \"\(want)\"")
        }
        self.init(raw: raw)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        do { try self.init(parsing: s) } catch {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// A typed 64-bit identifier, unique within one node or process (a counter or a user-chosen
/// number). Its text form is `prefix-<decimal>`.
public protocol LocalIdentifier: Hashable, Sendable, Comparable, Codable,
    CustomStringConvertible, LosslessStringConvertible
{
    static var prefix: String { get }
    var value: UInt64 { get }
    init(_ value: UInt64)
}

extension LocalIdentifier {
    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }

    public var description: String { "\(Self.prefix)-\(value)" }

    public init?(_ description: String) {
        guard let v = try? Self(parsing: description) else { return nil }
        self = v
    }

    /// Parses `prefix-<decimal>`; the error says which part was wrong.
    public init(parsing text: String) throws(IdentifierParseError) {
        let want = Self.prefix + "-"
        guard text.hasPrefix(want) else {
            throw IdentifierParseError(expected: Self.prefix, text: text,
                                       problem: "expected prefix \"\(want)\"")
        }
        let digits = text.dropFirst(want.count)
        // Digits only: `UInt64(_:)` alone would also accept a leading "+".
        guard digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = UInt64(digits) else {
            throw IdentifierParseError(expected: Self.prefix, text: text,
                                       problem: "expected a decimal number after \"\(want)\"")
        }
        self.init(v)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        self.init(try c.decode(UInt64.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}

/// Hands out increasing local identifiers; thread-safe.
public final class LocalIDSequence<ID: LocalIdentifier>: Sendable {
    private let next: Atomic<UInt64>

    public init(startingAt first: UInt64 = 1) {
        next = Atomic(first)
    }

    public func make() -> ID {
        ID(next.wrappingAdd(1, ordering: .relaxed).oldValue)
    }
}

// MARK: - The typed identifiers

/// Identifies a host (a machine running a host agent).
public struct HostID: GlobalIdentifier {
    public static let prefix = "host"
    public let raw: RawID128
    public init(raw: RawID128) { self.raw = raw }
}

/// Identifies a process started by a host agent or a task queue.
public struct ProcID: GlobalIdentifier {
    public static let prefix = "proc"
    public let raw: RawID128
    public init(raw: RawID128) { self.raw = raw }
}

/// Identifies a node: an endpoint that sends and receives envelopes.
public struct NodeID: GlobalIdentifier {
    public static let prefix = "node"
    public let raw: RawID128
    public init(raw: RawID128) { self.raw = raw }
}

/// Identifies a task in a task queue.
public struct TaskID: GlobalIdentifier {
    public static let prefix = "task"
    public let raw: RawID128
    public init(raw: RawID128) { self.raw = raw }
}

/// Identifies a reliable-link session between two peers.
public struct SessionID: GlobalIdentifier {
    public static let prefix = "session"
    public let raw: RawID128
    public init(raw: RawID128) { self.raw = raw }
}

/// Identifies one asynchronous command issued by a node (per node).
public struct CommandID: LocalIdentifier {
    public static let prefix = "cmd"
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
}

/// Identifies one execution of a program graph (per node).
public struct ExecID: LocalIdentifier {
    public static let prefix = "exec"
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
}

/// Identifies a shard of a distributed runner (chosen by the application).
public struct ShardID: LocalIdentifier {
    public static let prefix = "shard"
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
}
