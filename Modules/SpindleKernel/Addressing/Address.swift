/// Where a transport listens or connects.
///
/// Text forms (parse ⇄ print round-trip exactly for canonical input):
/// - `inproc://name` — the in-process transport; `name` is any non-empty text without `/`.
/// - `tcp://host:port` — IPv4 (`tcp://127.0.0.1:7100`), a host name (`tcp://localhost:80`) or
///   IPv6 in brackets (`tcp://[::1]:7100`); port 0 means "any free port".
/// - `unix:///absolute/path` — a Unix-domain socket.
public enum Address: Hashable, Sendable, Codable, CustomStringConvertible, LosslessStringConvertible {
    case inproc(name: String)
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    public var description: String {
        switch self {
        case .inproc(let name): return "inproc://\(name)"
        case .tcp(let host, let port):
            return host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .unix(let path): return "unix://\(path)"
        }
    }

    public init?(_ description: String) {
        guard let a = try? Address(parsing: description) else { return nil }
        self = a
    }

    /// Parses an address; the error names the part that was wrong.
    public init(parsing text: String) throws(AddressParseError) {
        guard let sep = text.firstRange(of: "://") else {
            throw AddressParseError(text: text, part: .scheme,
                                    problem: "missing \"://\" (expected inproc://, tcp:// or unix://)")
        }
        let scheme = text[..<sep.lowerBound]
        let rest = String(text[sep.upperBound...])
        switch scheme {
        case "inproc":
            guard !rest.isEmpty else {
                throw AddressParseError(text: text, part: .name, problem: "empty name")
            }
            guard !rest.contains("/") else {
                throw AddressParseError(text: text, part: .name, problem: "name may not contain \"/\"")
            }
            self = .inproc(name: rest)
        case "unix":
            guard rest.hasPrefix("/") else {
                throw AddressParseError(text: text, part: .path,
                                        problem: "path must be absolute (unix:///path)")
            }
            guard rest.count > 1 else {
                throw AddressParseError(text: text, part: .path, problem: "empty path")
            }
            // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
            guard rest.utf8.count < 108 else {
                throw AddressParseError(text: text, part: .path,
                                        problem: "path is \(rest.utf8.count) bytes; at most 107 fit a Unix socket")
            }
            self = .unix(path: rest)
        case "tcp":
            let (host, portText) = try Address.splitHostPort(rest, text: text)
            // Digits only: `UInt16(_:)` alone would also accept a leading "+".
            guard portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let port = UInt16(portText) else {
                throw AddressParseError(text: text, part: .port,
                                        problem: portText.isEmpty ? "missing port"
                                            : "\"\(portText)\" is not a port number 0...65535")
            }
            self = .tcp(host: host, port: port)
        default:
            throw AddressParseError(text: text, part: .scheme,
                                    problem: "unknown scheme \"\(scheme)\" (expected inproc, tcp or unix)")
        }
    }

    private static func splitHostPort(_ rest: String, text: String) throws(AddressParseError) -> (String, Substring) {
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw AddressParseError(text: text, part: .host, problem: "missing \"]\" after IPv6 host")
            }
            let host = String(rest[rest.index(after: rest.startIndex)..<close])
            // An IPv6 literal, optionally with a zone after "%" (fe80::1%eth0).
            let literal = host.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
            let zoneOK = literal.count == 1
                || (!literal[1].isEmpty && literal[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" }))
            guard !host.isEmpty, literal[0].contains(":"), zoneOK,
                  literal[0].allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                throw AddressParseError(text: text, part: .host, problem: "\"\(host)\" is not an IPv6 address")
            }
            let after = rest[rest.index(after: close)...]
            guard after.hasPrefix(":") else {
                throw AddressParseError(text: text, part: .port, problem: "missing \":port\" after \"]\"")
            }
            return (host, after.dropFirst())
        }
        guard let colon = rest.lastIndex(of: ":") else {
            throw AddressParseError(text: text, part: .port, problem: "missing \":port\"")
        }
        let host = String(rest[..<colon])
        guard !host.isEmpty else {
            throw AddressParseError(text: text, part: .host, problem: "empty host")
        }
        guard !host.contains(":") else {
            throw AddressParseError(text: text, part: .host,
                                    problem: "IPv6 host \"\(host)\" must be written in brackets: tcp://[\(host)]:port")
        }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" }) else {
            throw AddressParseError(text: text, part: .host, problem: "\"\(host)\" is not a host name or IPv4 address")
        }
        return (host, rest[rest.index(after: colon)...])
    }

    /// True for addresses only this machine can reach: inproc, unix, and TCP on 127.0.0.0/8,
    /// `localhost` or `::1`.
    public var isLoopback: Bool {
        switch self {
        case .inproc, .unix: return true
        case .tcp(let host, _):
            return host == "localhost" || host == "::1" || host.hasPrefix("127.")
        }
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

/// A malformed address: which part was wrong and why.
public struct AddressParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Part: String, Sendable, Equatable {
        case scheme, name, host, port, path
    }
    /// The whole text that failed to parse.
    public var text: String
    /// The part of it that was wrong.
    public var part: Part
    public var problem: String

    public var description: String {
        "bad address \"\(text)\": \(part.rawValue): \(problem)"
    }
}
