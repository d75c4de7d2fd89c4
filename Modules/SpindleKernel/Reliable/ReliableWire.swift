/// The reliable-link control messages and the data marking (see docs/wire-protocol.md).
///
/// Data envelopes keep their own protocol tag and kind; the link sets the
/// `EnvelopeFlags.sequenced` flag and writes its sequence number into `sequence`. Control
/// envelopes use `ProtocolTag.reliable` with one of the kinds below.
public enum ReliableWire {
    /// Initiator → acceptor, first envelope on every connection. `sequence` = highest sequence
    /// received in order, `correlation` = lowest sequence the sender still holds, payload =
    /// 32 bytes: the session id (high, low), the sender's incarnation, and the peer's
    /// incarnation as the sender last saw it (0: none), each little-endian.
    public static let hello: UInt16 = 1
    /// Acceptor → initiator, answer to `hello`; same fields.
    public static let helloAck: UInt16 = 2
    /// Cumulative acknowledgement: `sequence` = highest sequence received in order. Also the
    /// heartbeat an established side sends every `heartbeatInterval`.
    public static let ack: UInt16 = 3
    /// Abandon: every sequence below `sequence` was returned to its sender and will never be
    /// sent again; the receiver stops waiting for them.
    public static let skip: UInt16 = 4
    /// Graceful close: `sequence` = highest sequence the closing side delivered; it delivers
    /// nothing more on this session.
    public static let fin: UInt16 = 5
    /// Answer to `fin`: `sequence` = highest sequence the answering side delivered.
    public static let finAck: UInt16 = 6

    /// Bytes of a `hello`/`helloAck` payload.
    public static let handshakePayloadSize = 32
    /// The largest sequence a session numbers (2⁶²: centuries of messages at any rate); larger
    /// values from a peer close the connection instead of overflowing a counter.
    public static let maximumSequence: UInt64 = 1 << 62
    /// How far beyond the next expected sequence a peer may move it (`skip`, a handshake's
    /// lowest held sequence) in one step.
    public static let maximumSkip: UInt64 = 1 << 40

    /// The fields of a `hello` or `helloAck`.
    public struct HandshakeFields: Sendable, Equatable {
        public var session: SessionID
        public var incarnation: UInt64
        public var knownPeerIncarnation: UInt64
        public var receivedUpTo: UInt64
        public var lowestHeld: UInt64
    }

    static func handshake(kind: UInt16, session: SessionID, incarnation: UInt64, knownPeerIncarnation: UInt64,
                          receivedUpTo: UInt64, lowestHeld: UInt64) -> Envelope {
        var payload = [UInt8](repeating: 0, count: handshakePayloadSize)
        payload.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: session.raw.high.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: session.raw.low.littleEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: incarnation.littleEndian, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: knownPeerIncarnation.littleEndian, toByteOffset: 24, as: UInt64.self)
        }
        return Envelope(protocolTag: .reliable, kind: kind, correlation: lowestHeld, sequence: receivedUpTo,
                        payload: payload)
    }

    /// The fields of a `hello` / `helloAck`, or nil when the payload is not 32 bytes.
    public static func handshakeFields(of e: borrowing Envelope) -> HandshakeFields? {
        guard e.payload.count == handshakePayloadSize else { return nil }
        return e.payload.withUnsafeBytes { raw in
            func word(_ at: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            return HandshakeFields(session: SessionID(raw: RawID128(high: word(0), low: word(8))),
                                   incarnation: word(16), knownPeerIncarnation: word(24),
                                   receivedUpTo: e.sequence, lowestHeld: e.correlation)
        }
    }

    /// The session id of a `hello` / `helloAck`, or nil when the payload is malformed.
    public static func session(of e: Envelope) -> SessionID? {
        handshakeFields(of: e)?.session
    }

    /// Why a `hello` that opens a connection cannot be routed to a session, or nil when it can.
    static func refusal(ofHello e: Envelope) -> String? {
        guard e.protocolTag == .reliable, e.kind == hello else {
            return "the first envelope is not a reliable-link hello (protocol \(e.protocolTag), kind \(e.kind))"
        }
        guard let h = handshakeFields(of: e) else {
            return "hello payload has \(e.payload.count) bytes, not \(handshakePayloadSize)"
        }
        if h.incarnation == 0 { return "hello without an incarnation" }
        if h.receivedUpTo > maximumSequence { return "hello acknowledges sequence \(h.receivedUpTo), beyond any session" }
        if h.lowestHeld > maximumSequence { return "hello names lowest held sequence \(h.lowestHeld), beyond any session" }
        return nil
    }

    static func control(_ kind: UInt16, sequence: UInt64) -> Envelope {
        Envelope(protocolTag: .reliable, kind: kind, sequence: sequence)
    }
}

extension EnvelopeFlags {
    /// The envelope is reliable-link data: `sequence` is its position in the link's session.
    public static let sequenced = EnvelopeFlags(rawValue: 1 << 3)
}

/// Why a reliable link handed messages back to their sender. Except after a graceful close
/// (`.peerClosed`, `.linkClosed` with the peer's `finAck`), a returned message is "not known
/// to be delivered": the peer may have delivered it and lost the acknowledgement.
public enum UndeliverableReason: Sendable, Equatable, CustomStringConvertible {
    /// Not acknowledged within the delivery timeout; `lastError` is the last connection
    /// failure seen, if any.
    case timedOut(after: Duration, lastError: String?)
    /// The link was closed or shut down with the messages still unacknowledged.
    case linkClosed
    /// Nothing was heard from the peer for the liveness bound: it is declared lost.
    case peerUnresponsive(after: Duration)
    /// The peer came back as a new incarnation (it restarted, forgot the session, or gave up
    /// on it): the session these messages belonged to is over.
    case peerRestarted
    /// The peer closed the session gracefully before delivering these.
    case peerClosed

    public var description: String {
        switch self {
        case .timedOut(let d, let e):
            return "not acknowledged within \(d)" + (e.map { "; last connection error: \($0)" } ?? "")
        case .linkClosed:
            return "the link was closed before the peer acknowledged them"
        case .peerUnresponsive(let d):
            return "the peer was declared lost: nothing heard from it for \(d)"
        case .peerRestarted:
            return "the peer restarted or ended the session before acknowledging them"
        case .peerClosed:
            return "the peer closed the session before delivering them"
        }
    }
}

/// Why a reliable link closes its connection.
public enum ReliableLinkFault: Sendable, Equatable, CustomStringConvertible {
    /// The peer broke the protocol (a malformed or out-of-range control value, data before the
    /// handshake, …); the text says what.
    case protocolViolation(String)
    /// An envelope arrived out of order on the connection (one before it was lost).
    case sequenceGap(expected: UInt64, received: UInt64)
    /// (Initiator) the handshake was not answered in time.
    case handshakeTimedOut(after: Duration)
    /// Transmitted messages saw no acknowledgement progress for this long.
    case acknowledgementTimedOut(after: Duration)
    /// Nothing was heard from the peer for the liveness bound.
    case peerUnresponsive(after: Duration)
    /// The session ended gracefully (`fin`/`finAck`).
    case sessionClosed

    public var description: String {
        switch self {
        case .protocolViolation(let s): return "reliable-link protocol violation: \(s)"
        case .sequenceGap(let e, let r): return "sequence gap: expected \(e), received \(r)"
        case .handshakeTimedOut(let d): return "handshake not answered within \(d)"
        case .acknowledgementTimedOut(let d): return "no acknowledgement progress for \(d)"
        case .peerUnresponsive(let d): return "nothing heard from the peer for \(d)"
        case .sessionClosed: return "the session was closed"
        }
    }
}

/// How a reliable link's peer is doing (`ReliableLink.Handler.onEvent`).
public enum ReliableLinkEvent: Sendable, Equatable, CustomStringConvertible {
    /// A handshake with the peer completed (after a loss, the peer is back).
    case connected(peerIncarnation: UInt64)
    /// Nothing was heard from the peer for the liveness bound; the text says so.
    case peerLost(String)
    /// The peer is a new incarnation: the session started over.
    case peerRestarted
    /// The peer closed the session gracefully.
    case peerClosed

    public var description: String {
        switch self {
        case .connected(let i): return "connected (peer incarnation \(i))"
        case .peerLost(let why): return "peer lost: \(why)"
        case .peerRestarted: return "peer restarted"
        case .peerClosed: return "peer closed the session"
        }
    }
}

/// A failure of a reliable-link operation.
public enum ReliableLinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The link is closed (or closing); nothing more is accepted.
    case closed
    /// More than `limit` messages are waiting for acknowledgement.
    case queueFull(limit: Int)
    /// The messages waiting for acknowledgement hold `limit` bytes or more.
    case queueBytesFull(limit: Int)
    /// The message encodes to a frame larger than the link's limit.
    case tooLarge(size: Int, limit: Int)

    public var description: String {
        switch self {
        case .closed: return "reliable link is closed"
        case .queueFull(let limit): return "reliable link queue is full (\(limit) unacknowledged messages)"
        case .queueBytesFull(let limit): return "reliable link queue is full (\(limit) bytes unacknowledged)"
        case .tooLarge(let size, let limit): return "message of \(size) bytes exceeds the frame limit of \(limit)"
        }
    }
}
