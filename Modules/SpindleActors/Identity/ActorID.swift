import SpindleKernel

/// Names a distributed actor: the node it lives on, a per-node number or a well-known name,
/// and, when the node listens, the address where it can be reached.
///
/// Text form: `node-<32 hex>/<local>[@<address>]`, for example
/// `node-0190f3a2b4c50000a1b2c3d4e5f60718/7@tcp://10.0.0.5:7400` (an actor number) or
/// `node-0190f3a2b4c50000a1b2c3d4e5f60718/counters` (a well-known name, no address).
/// `init(parsing:)` reads it back and throws `ActorIDParseError` naming the offending part.
///
/// Identity is the node and the local part: two ids that differ only in their address are
/// equal (the address is how to reach the node, not who the actor is). `Codable` as its
/// text form, so references travel as arguments and results.
public struct ActorID: Hashable, Sendable, Codable, CustomStringConvertible, LosslessStringConvertible {
    /// The actor's name on its node.
    public enum Local: Hashable, Sendable, CustomStringConvertible {
        /// Assigned by the node in creation order: 1, 2, 3…
        case number(UInt64)
        /// Chosen by the application (`SpindleActorSystem.withWellKnownName`): a letter, then
        /// letters, digits, `.`, `_` or `-`; at most 128 characters.
        case name(String)

        public var description: String {
            switch self {
            case .number(let n): return String(n)
            case .name(let s): return s
            }
        }
    }

    /// The node (one `SpindleActorSystem`) the actor lives on.
    public let node: NodeID
    public let local: Local
    /// Where `node` accepts connections; nil when it does not listen (its actors are then
    /// reachable only over links the node opened itself).
    public let address: Address?

    public init(node: NodeID, local: Local, address: Address? = nil) {
        self.node = node
        self.local = local
        self.address = address
    }

    public static func == (a: ActorID, b: ActorID) -> Bool { a.node == b.node && a.local == b.local }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(node)
        hasher.combine(local)
    }

    public var description: String {
        let base = "\(node)/\(local)"
        guard let address else { return base }
        return base + "@" + address.description
    }

    public init?(_ description: String) {
        guard let id = try? ActorID(parsing: description) else { return nil }
        self = id
    }

    /// Parses the text form.
    /// - Throws: `ActorIDParseError` naming the part (node, local part, address) and the byte
    ///   offset where it went wrong.
    public init(parsing text: String) throws(ActorIDParseError) {
        let utf8 = Array(text.utf8)
        let nodeLength = NodeID.prefix.utf8.count + 1 + 32
        guard utf8.count >= nodeLength else {
            throw ActorIDParseError(text: text, part: .node, offset: 0,
                                    problem: "expected a node id (\"node-\" and 32 hex digits)")
        }
        let node: NodeID
        do {
            node = try NodeID(parsing: String(decoding: utf8[0..<nodeLength], as: UTF8.self))
        } catch {
            throw ActorIDParseError(text: text, part: .node, offset: 0, problem: error.problem)
        }
        guard utf8.count > nodeLength, utf8[nodeLength] == UInt8(ascii: "/") else {
            throw ActorIDParseError(text: text, part: .local, offset: nodeLength, problem: "expected \"/\" after the node id")
        }
        let localStart = nodeLength + 1
        let at = utf8[localStart...].firstIndex(of: UInt8(ascii: "@")) ?? utf8.count
        let localBytes = utf8[localStart..<at]
        let local: Local
        if let first = localBytes.first, isDigit(first) {
            guard localBytes.allSatisfy(isDigit), let n = UInt64(String(decoding: localBytes, as: UTF8.self)) else {
                throw ActorIDParseError(text: text, part: .local, offset: localStart,
                                        problem: "an actor number is decimal digits that fit 64 bits")
            }
            local = .number(n)
        } else {
            if let problem = ActorID.nameProblem(localBytes) {
                throw ActorIDParseError(text: text, part: .local, offset: localStart + problem.offset, problem: problem.text)
            }
            local = .name(String(decoding: localBytes, as: UTF8.self))
        }
        var address: Address? = nil
        if at < utf8.count {
            let rest = String(decoding: utf8[(at + 1)...], as: UTF8.self)
            do {
                address = try Address(parsing: rest)
            } catch {
                throw ActorIDParseError(text: text, part: .address, offset: at + 1, problem: error.description)
            }
        }
        self.init(node: node, local: local, address: address)
    }

    /// Why `name` cannot be a well-known name (offset within it and what), or nil when it can.
    static func nameProblem<C: Collection>(_ name: C) -> (offset: Int, text: String)? where C.Element == UInt8 {
        guard let first = name.first else { return (0, "the local part is empty") }
        guard name.count <= 128 else { return (128, "a name is at most 128 bytes") }
        guard isLetter(first) else { return (0, "a name starts with a letter") }
        for (i, c) in name.enumerated() where !(isLetter(c) || isDigit(c) || c == UInt8(ascii: ".")
                                                || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")) {
            return (i, "byte 0x\(String(c, radix: 16)) is not allowed in a name (letters, digits, \".\", \"_\", \"-\")")
        }
        return nil
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

private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
private func isLetter(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }

/// The text of an actor id did not parse.
public struct ActorIDParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Part: String, Sendable, Equatable {
        case node, local, address
    }
    /// The text that did not parse.
    public var text: String
    /// Which part was wrong.
    public var part: Part
    /// The byte offset in `text` where the problem starts.
    public var offset: Int
    public var problem: String

    public var description: String {
        "cannot parse actor id \"\(text)\": \(part.rawValue) at byte \(offset): \(problem)"
    }
}
