/// The reliable-link control messages and the data marking (see docs/wire-protocol.md).
///
/// Data envelopes keep their own protocol tag and kind; the link sets the
/// `EnvelopeFlags.sequenced` flag and writes its sequence number into `sequence`. Control
/// envelopes use `ProtocolTag.reliable` with one of the kinds below.
public enum ReliableWire {
    /// Initiator → acceptor, first envelope on every connection. `sequence` = highest sequence
    /// received in order, `correlation` = lowest sequence the sender still holds, payload = the
    /// 16-byte session id (high then low, little-endian).
    public static let hello: UInt16 = 1
    /// Acceptor → initiator, answer to `hello`; same fields.
    public static let helloAck: UInt16 = 2
    /// Cumulative acknowledgement: `sequence` = highest sequence received in order.
    public static let ack: UInt16 = 3
    /// Abandon: every sequence below `sequence` was returned to its sender and will never be
    /// sent again; the receiver stops waiting for them.
    public static let skip: UInt16 = 4

    static func handshake(kind: UInt16, session: SessionID, receivedUpTo: UInt64, lowestHeld: UInt64) -> Envelope {
        var payload = [UInt8](repeating: 0, count: 16)
        payload.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: session.raw.high.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: session.raw.low.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        return Envelope(protocolTag: .reliable, kind: kind, correlation: lowestHeld, sequence: receivedUpTo,
                        payload: payload)
    }

    /// The session id of a `hello` / `helloAck`, or nil when the payload is not 16 bytes.
    public static func session(of e: Envelope) -> SessionID? {
        guard e.payload.count == 16 else { return nil }
        return e.payload.withUnsafeBytes { raw in
            SessionID(raw: RawID128(high: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                                    low: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))))
        }
    }

    static func control(_ kind: UInt16, sequence: UInt64) -> Envelope {
        Envelope(protocolTag: .reliable, kind: kind, sequence: sequence)
    }
}

extension EnvelopeFlags {
    /// The envelope is reliable-link data: `sequence` is its position in the link's session.
    public static let sequenced = EnvelopeFlags(rawValue: 1 << 3)
}

/// Why a reliable link handed messages back to their sender.
public enum UndeliverableReason: Sendable, Equatable, CustomStringConvertible {
    /// Not acknowledged within the delivery timeout; `lastError` is the last connection
    /// failure seen, if any.
    case timedOut(after: Duration, lastError: String?)
    /// The link was closed or shut down with the messages still unacknowledged.
    case linkClosed

    public var description: String {
        switch self {
        case .timedOut(let d, let e):
            return "not acknowledged within \(d)" + (e.map { "; last connection error: \($0)" } ?? "")
        case .linkClosed:
            return "the link was closed before the peer acknowledged them"
        }
    }
}

/// A failure of a reliable-link operation.
public enum ReliableLinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The link is closed; nothing more is accepted.
    case closed
    /// More than `limit` messages are waiting for acknowledgement.
    case queueFull(limit: Int)
    /// The message encodes to a frame larger than the link's limit.
    case tooLarge(size: Int, limit: Int)

    public var description: String {
        switch self {
        case .closed: return "reliable link is closed"
        case .queueFull(let limit): return "reliable link queue is full (\(limit) unacknowledged messages)"
        case .tooLarge(let size, let limit): return "message of \(size) bytes exceeds the frame limit of \(limit)"
        }
    }
}
