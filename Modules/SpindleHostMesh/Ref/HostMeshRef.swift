import SpindleKernel

/// A non-owning reference to a mesh of hosts: its name and its hosts' agent addresses, in
/// rank order.
///
/// Text form: `name@addr,addr,…`, for example
/// `trainers@tcp://10.0.0.1:7100,tcp://[fe80::1]:7100,unix:///run/spindle.sock`.
/// The name is one or more of `A–Z a–z 0–9 . _ -`; a mesh of no hosts prints as `name@`.
/// Inside an address, `%` and `,` print as `%25` and `%2C` so any Unix path survives.
/// `description` and `init(parsing:)` round-trip exactly.
public struct HostMeshRef: Sendable, Hashable, Codable, CustomStringConvertible, LosslessStringConvertible {
    public var name: String
    public var hosts: [Address]

    /// - Throws: `HostMeshRefError.badName` or `.duplicateHost`.
    public init(name: String, hosts: [Address]) throws(HostMeshRefError) {
        try HostMeshRef.checkName(name, text: name)
        var seen = Set<Address>()
        for (i, h) in hosts.enumerated() where !seen.insert(h).inserted {
            throw HostMeshRefError(text: name, problem: .duplicateHost(index: i, host: h))
        }
        self.name = name
        self.hosts = hosts
    }

    public var description: String {
        name + "@" + hosts.map { HostMeshRef.escape($0.description) }.joined(separator: ",")
    }

    public init?(_ description: String) {
        guard let r = try? HostMeshRef(parsing: description) else { return nil }
        self = r
    }

    /// Parses the text form.
    /// - Throws: `HostMeshRefError` naming what was wrong: no `@`, a missing or bad name, an
    ///   empty or bad address (with its index), a duplicate host.
    public init(parsing text: String) throws(HostMeshRefError) {
        guard let at = text.firstIndex(of: "@") else {
            throw HostMeshRefError(text: text, problem: .missingSeparator)
        }
        let name = String(text[..<at])
        try HostMeshRef.checkName(name, text: text)
        let list = text[text.index(after: at)...]
        var hosts: [Address] = []
        if !list.isEmpty {
            for (i, part) in list.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
                guard !part.isEmpty else {
                    throw HostMeshRefError(text: text, problem: .emptyHost(index: i))
                }
                guard let unescaped = HostMeshRef.unescape(part) else {
                    throw HostMeshRefError(text: text, problem: .badEscape(index: i))
                }
                do {
                    hosts.append(try Address(parsing: unescaped))
                } catch {
                    throw HostMeshRefError(text: text, problem: .badAddress(index: i, error))
                }
            }
        }
        do {
            try self.init(name: name, hosts: hosts)
        } catch {
            throw HostMeshRefError(text: text, problem: error.problem)
        }
    }

    /// The sub-mesh of the hosts at `ranks` (ranks renumber from 0 in the slice).
    /// - Throws: `HostMeshRefError.rankOutOfRange` for a range outside `0..<hosts.count`.
    public func slice(_ ranks: Range<Int>) throws(HostMeshRefError) -> HostMeshRef {
        guard ranks.lowerBound >= 0, ranks.upperBound <= hosts.count else {
            throw HostMeshRefError(text: description,
                                   problem: .rankOutOfRange(ranks, hostCount: hosts.count))
        }
        var r = self
        r.hosts = Array(hosts[ranks])
        return r
    }

    static func checkName(_ name: String, text: String) throws(HostMeshRefError) {
        guard !name.isEmpty else { throw HostMeshRefError(text: text, problem: .missingName) }
        for (offset, c) in name.enumerated()
        where !(c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "_" || c == "-")) {
            throw HostMeshRefError(text: text, problem: .badName(character: c, offset: offset))
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "%": out += "%25"
            case ",": out += "%2C"
            default: out.append(c)
            }
        }
        return out
    }

    static func unescape(_ s: Substring) -> String? {
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == "%" {
                let code = s[i...].dropFirst().prefix(2)
                switch code.uppercased() {
                case "25": out.append("%")
                case "2C": out.append(",")
                default: return nil
                }
                i = s.index(i, offsetBy: 3)
            } else {
                out.append(s[i])
                i = s.index(after: i)
            }
        }
        return out
    }
}

/// A host-mesh reference that could not be parsed or built: the text and what was wrong.
public struct HostMeshRefError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Problem: Sendable, Equatable, CustomStringConvertible {
        /// No `@` between the name and the hosts.
        case missingSeparator
        /// Nothing before the `@`.
        case missingName
        /// A character not allowed in a mesh name, at its offset in the name.
        case badName(character: Character, offset: Int)
        /// Two commas in a row, or a trailing comma: the host at `index` is empty.
        case emptyHost(index: Int)
        /// A `%` not followed by `25` or `2C` in the host at `index`.
        case badEscape(index: Int)
        /// The host at `index` is not an address.
        case badAddress(index: Int, AddressParseError)
        /// The host at `index` appeared earlier in the list.
        case duplicateHost(index: Int, host: Address)
        /// A slice outside the mesh.
        case rankOutOfRange(Range<Int>, hostCount: Int)

        public var description: String {
            switch self {
            case .missingSeparator: return "missing \"@\" between the mesh name and its hosts"
            case .missingName: return "missing mesh name before \"@\""
            case .badName(let c, let o):
                return "character \"\(c)\" at offset \(o) of the name is not one of A-Z a-z 0-9 . _ -"
            case .emptyHost(let i): return "host \(i) is empty"
            case .badEscape(let i): return "host \(i) has a \"%\" not followed by 25 or 2C"
            case .badAddress(let i, let e): return "host \(i): \(e)"
            case .duplicateHost(let i, let h): return "host \(i) (\(h)) is listed twice"
            case .rankOutOfRange(let r, let n): return "slice \(r) is outside 0..<\(n)"
            }
        }
    }

    public var text: String
    public var problem: Problem

    public var description: String { "bad host mesh reference \"\(text)\": \(problem)" }
}
