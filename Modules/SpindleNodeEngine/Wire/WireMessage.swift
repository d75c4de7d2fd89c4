/// Envelope kinds of the node-engine protocol (`ProtocolTag.nodeEngine`).
public enum WireKind: UInt16, Sendable {
    /// Fill a remote site or fire a remote op; a response is expected (correlation = request id).
    case request = 1
    /// Answers a request (flag `.response`; with flag `.error` the payload is the error text).
    case response = 2
    /// Fill a remote site; no response (flag `.oneWay`).
    case fill = 3
    /// The receiver is overloaded: back off (correlation = the refused request's id).
    case backoffNotice = 4
    /// Are you there? Sent to a watched peer whose connection was idle for a heartbeat
    /// interval (correlation = a heartbeat number).
    case heartbeat = 5
    /// Answers a heartbeat (same correlation).
    case heartbeatAck = 6
}

/// Payloads of node-engine envelopes.
///
/// ```
/// request / fill : target u8 (0 site, 1 op) | name (u32 len + UTF-8) | count u32 | values…
///                | target u8 = 2 (op, inputs by port name) | name | count u32 | (port name, value)…
/// response       : count u32 | values…        (error flag: text u32 len + UTF-8)
/// backoffNotice, heartbeat, heartbeatAck : empty
/// ```
enum WireMessage {
    /// A decoded request or fill: the target and its values, by position or by port name.
    struct Call {
        var target: WireTarget
        var values: [Value]
        /// Port names of `values` (nil: positional).
        var names: [String]?
    }

    static func encodeNamedCall(op: String, _ values: [(String, Value)]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 + values.reduce(0) { $0 + 4 + $1.0.utf8.count + $1.1.byteCount })
        out.append(2)
        ValueCodec.appendU32(UInt32(truncatingIfNeeded: op.utf8.count), &out)
        out.append(contentsOf: op.utf8)
        ValueCodec.appendU32(UInt32(truncatingIfNeeded: values.count), &out)
        for (name, v) in values {
            ValueCodec.appendU32(UInt32(truncatingIfNeeded: name.utf8.count), &out)
            out.append(contentsOf: name.utf8)
            ValueCodec.encode(v, into: &out)
        }
        return out
    }

    static func encodeCall(_ target: WireTarget, _ values: [Value]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 + values.reduce(0) { $0 + $1.byteCount })
        let name: String
        switch target {
        case .site(let s): out.append(0); name = s
        case .op(let o): out.append(1); name = o
        }
        ValueCodec.appendU32(UInt32(truncatingIfNeeded: name.utf8.count), &out)
        out.append(contentsOf: name.utf8)
        encodeValues(values, into: &out)
        return out
    }

    static func decodeCall(_ bytes: [UInt8]) throws(ValueDecodingError) -> Call {
        var r = ValueCodec.Reader(bytes)
        let kind = try r.u8()
        guard kind <= 2 else { throw ValueDecodingError(offset: 0, problem: "unknown target kind \(kind)") }
        let name = try r.string()
        if kind == 2 {
            let n = Int(try r.u32())
            guard n <= (r.remaining) / 5 else {
                throw ValueDecodingError(offset: r.offset, problem: "\(n) named values cannot fit in \(r.remaining) bytes")
            }
            var names: [String] = [], values: [Value] = []
            names.reserveCapacity(n)
            values.reserveCapacity(n)
            for _ in 0..<n {
                names.append(try r.string())
                values.append(try r.value())
            }
            guard r.isAtEnd else { throw ValueDecodingError(offset: r.offset, problem: "\(r.remaining) trailing bytes") }
            return Call(target: .op(name), values: values, names: names)
        }
        let values = try decodeValues(&r)
        return Call(target: kind == 0 ? .site(name) : .op(name), values: values, names: nil)
    }

    static func encodeValues(_ values: [Value]) -> [UInt8] {
        var out: [UInt8] = []
        encodeValues(values, into: &out)
        return out
    }

    static func encodeValues(_ values: [Value], into out: inout [UInt8]) {
        ValueCodec.appendU32(UInt32(truncatingIfNeeded: values.count), &out)
        for v in values { ValueCodec.encode(v, into: &out) }
    }

    static func decodeValues(_ bytes: [UInt8]) throws(ValueDecodingError) -> [Value] {
        var r = ValueCodec.Reader(bytes)
        return try decodeValues(&r)
    }

    static func decodeValues(_ r: inout ValueCodec.Reader) throws(ValueDecodingError) -> [Value] {
        let n = Int(try r.u32())
        guard n <= r.remaining else {
            throw ValueDecodingError(offset: r.offset, problem: "\(n) values cannot fit in \(r.remaining) bytes")
        }
        var values: [Value] = []
        values.reserveCapacity(n)
        for _ in 0..<n { values.append(try r.value()) }
        guard r.isAtEnd else { throw ValueDecodingError(offset: r.offset, problem: "\(r.remaining) trailing bytes") }
        return values
    }

    static func encodeText(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        ValueCodec.appendU32(UInt32(truncatingIfNeeded: text.utf8.count), &out)
        out.append(contentsOf: text.utf8)
        return out
    }

    static func decodeText(_ bytes: [UInt8]) throws(ValueDecodingError) -> String {
        var r = ValueCodec.Reader(bytes)
        return try r.string()
    }
}
