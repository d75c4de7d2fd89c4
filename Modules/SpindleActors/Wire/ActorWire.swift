import SpindleKernel

extension ProtocolTag {
    /// Distributed actor calls (SpindleActors).
    public static let actors = ProtocolTag(rawValue: 6)
}

/// The envelopes of the actor protocol, carried by reliable links (docs/actors.md, "Wire").
///
/// | kind | direction | correlation | payload |
/// |---|---|---|---|
/// | `hello` | initiator → acceptor, first on a link | 0 | the sender's listen address, if any |
/// | `welcome` | answer to `hello` | 0 | the same, of the acceptor |
/// | `call` | caller → callee | call id | `CallHeader` then the arguments |
/// | `reply` | callee → caller | call id | a `Reply` |
/// | `cancel` | caller → callee | call id | empty |
///
/// `source` is the sending node, `destination` the node addressed; a call carries the time
/// left before its deadline as `deadlineBudgetNanos` and, when no reply is wanted, the
/// `oneWay` flag.
enum ActorWire {
    static let hello: UInt16 = 1
    static let welcome: UInt16 = 2
    static let call: UInt16 = 3
    static let reply: UInt16 = 4
    static let cancel: UInt16 = 5

    static let version: UInt8 = 1

    /// A `hello` or `welcome` payload: version, then 0 or 1 and the address text.
    static func introduction(address: Address?) -> [UInt8] {
        var w = BinaryWriter(capacity: 32)
        w.byte(version)
        if let address {
            w.byte(1)
            w.string(address.description)
        } else {
            w.byte(0)
        }
        return w.bytes
    }

    static func parseIntroduction(_ payload: [UInt8]) throws(ActorWireError) -> Address? {
        var r = BinaryReader(payload)
        do {
            let v = try r.byte()
            guard v == version else { throw ActorWireError("unsupported actor wire version \(v)") }
            guard try r.byte() == 1 else { return nil }
            let text = try r.string()
            do { return try Address(parsing: text) } catch { throw ActorWireError("bad address in introduction: \(error)") }
        } catch let e as BinaryReadError {
            throw ActorWireError("malformed introduction \(e)")
        } catch let e as ActorWireError {
            throw e
        } catch {
            throw ActorWireError("malformed introduction: \(error)")
        }
    }
}

/// A malformed actor-protocol message.
struct ActorWireError: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The start of a `call` payload: which actor, which function, generic substitutions; the
/// arguments follow as a count and that many `CompactEncoder` elements.
struct CallHeader: Sendable, Equatable {
    var actor: ActorID.Local
    var target: String
    var substitutions: [String]
    var argumentCount: Int

    /// Writes the header; the arguments' elements are appended after it.
    func write(into w: inout BinaryWriter) {
        w.byte(ActorWire.version)
        switch actor {
        case .number(let n):
            w.byte(0)
            w.varint(n)
        case .name(let s):
            w.byte(1)
            w.string(s)
        }
        w.string(target)
        w.varint(UInt64(substitutions.count))
        for s in substitutions { w.string(s) }
        w.varint(UInt64(argumentCount))
    }

    /// Reads a header; `reader` is left at the first argument.
    static func read(_ r: inout BinaryReader) throws(ActorWireError) -> CallHeader {
        do {
            let v = try r.byte()
            guard v == ActorWire.version else { throw ActorWireError("unsupported actor wire version \(v)") }
            let actor: ActorID.Local
            switch try r.byte() {
            case 0:
                actor = .number(try r.varint())
            case 1:
                let name = try r.string()
                if let problem = ActorID.nameProblem(name.utf8) {
                    throw ActorWireError("bad actor name \"\(name)\": \(problem.text)")
                }
                actor = .name(name)
            case let t:
                throw ActorWireError("unknown actor reference tag \(t)")
            }
            let target = try r.string()
            guard !target.isEmpty, target.utf8.count <= 4096 else {
                throw ActorWireError("call target of \(target.utf8.count) bytes (expected 1...4096)")
            }
            let n = try r.count("generic substitution count", cap: 64)
            var subs: [String] = []
            for _ in 0..<n { subs.append(try r.string()) }
            let args = try r.count("argument count")
            return CallHeader(actor: actor, target: target, substitutions: subs, argumentCount: args)
        } catch let e as BinaryReadError {
            throw ActorWireError("malformed call \(e)")
        } catch let e as ActorWireError {
            throw e
        } catch {
            throw ActorWireError("malformed call: \(error)")
        }
    }
}

/// A `reply` payload: how the call ended.
enum Reply: Sendable, Equatable {
    /// The function returned this value (one `CompactEncoder` element).
    case value([UInt8])
    /// The function returned nothing.
    case void
    /// The function threw a `Codable` error: its type's mangled name, its encoding, its text.
    case codableError(type: String, encoded: [UInt8], description: String)
    /// The function threw another error: its type's name and its text.
    case otherError(type: String, description: String)
    /// The system failed the call (`ActorCallError`, encoded).
    case systemError(ActorCallError)

    func encode() -> [UInt8] {
        var w = BinaryWriter(capacity: 16)
        switch self {
        case .value(let bytes):
            w.byte(0)
            w.bytes.append(contentsOf: bytes)
        case .void:
            w.byte(1)
        case .codableError(let type, let encoded, let description):
            w.byte(2)
            w.string(type)
            w.blob(encoded)
            w.string(description)
        case .otherError(let type, let description):
            w.byte(3)
            w.string(type)
            w.string(description)
        case .systemError(let error):
            w.byte(4)
            // An ActorCallError always encodes (its cases hold Codable values); the fallback
            // keeps the reply well formed if that ever changes.
            let encoded = (try? CompactEncoder().encode(error)) ?? []
            w.bytes.append(contentsOf: encoded)
        }
        return w.bytes
    }

    static func decode(_ payload: [UInt8]) throws(ActorWireError) -> Reply {
        var r = BinaryReader(payload)
        do {
            switch try r.byte() {
            case 0:
                return .value(Array(payload[r.offset...]))
            case 1:
                return .void
            case 2:
                let type = try r.string()
                let encoded = try r.blob()
                let description = try r.string()
                return .codableError(type: type, encoded: encoded, description: description)
            case 3:
                let type = try r.string()
                let description = try r.string()
                return .otherError(type: type, description: description)
            case 4:
                let rest = Array(payload[r.offset...])
                do {
                    return .systemError(try CompactDecoder().decode(ActorCallError.self, from: rest))
                } catch {
                    throw ActorWireError("undecodable system error in reply: \(error)")
                }
            case let t:
                throw ActorWireError("unknown reply status \(t)")
            }
        } catch let e as BinaryReadError {
            throw ActorWireError("malformed reply \(e)")
        } catch let e as ActorWireError {
            throw e
        } catch {
            throw ActorWireError("malformed reply: \(error)")
        }
    }
}
