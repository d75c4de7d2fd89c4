/// Why a connection's handshake failed; offsets count bytes of the peer's stream.
public struct TCPHandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: Sendable, Equatable {
        /// Byte `offset` is `byte`, not the "SPTC" magic.
        case badMagic(offset: Int, byte: UInt8)
        /// The peer speaks another handshake version.
        case unsupportedVersion(UInt8, offset: Int)
        /// The peer's mode byte is neither plain (0) nor Noise (1).
        case badMode(UInt8, offset: Int)
        /// The peer's role byte is invalid or the same as ours.
        case badRole(UInt8, offset: Int, local: Role)
        /// The reserved preamble byte is not zero.
        case reservedNotZero(UInt8, offset: Int)
        /// The peer requires a cluster key but this side has none.
        case localHasNoKey
        /// This side requires a cluster key and the peer offered none.
        case peerHasNoKey
        /// A handshake message (starting at `offset`) does not authenticate: the keys differ,
        /// or the bytes were tampered with or replayed.
        case messageNotAuthenticated(offset: Int, message: String)
        /// The peer's ephemeral public key at `offset` is not usable (a low-order point).
        case invalidEphemeralKey(offset: Int)
        /// The initiator's confirmation record at `offset` announces `length` bytes, not 32.
        case badConfirmation(offset: Int, length: Int)
        /// The handshake did not finish in time.
        case timedOut(after: Duration, waitingFor: String)
        /// The peer closed the connection after sending this many bytes of its handshake.
        case peerClosed(afterBytes: Int, duringKeyedHandshake: Bool)
        /// The crypto library failed (never expected).
        case cryptoFailure(String)
    }

    /// Which end of a connection a side is.
    public enum Role: Sendable, Equatable, CustomStringConvertible {
        case initiator, acceptor

        public var description: String { self == .initiator ? "initiator" : "acceptor" }
    }

    public var kind: Kind
    /// Whether this side holds a cluster key (set by the state machine).
    public var localRequiresAuthentication = false

    public init(_ kind: Kind) { self.kind = kind }

    /// True when the failure is about authentication (either side holds a key); otherwise it
    /// is a plain protocol violation of an unauthenticated handshake.
    public var isAuthenticationFailure: Bool {
        switch kind {
        case .localHasNoKey, .peerHasNoKey, .messageNotAuthenticated, .invalidEphemeralKey, .badConfirmation:
            return true
        default:
            return localRequiresAuthentication
        }
    }

    /// True when the keys do not match (they differ, or one side has none).
    public var isKeyMismatch: Bool {
        switch kind {
        case .localHasNoKey, .peerHasNoKey, .messageNotAuthenticated: return true
        case .peerClosed(_, let keyed): return keyed
        default: return false
        }
    }

    public var description: String {
        switch kind {
        case .badMagic(let offset, let byte):
            return "byte \(offset) of the peer's handshake is 0x\(hex(byte)), not the \"SPTC\" magic: the peer does not speak SpindleTCP"
        case .unsupportedVersion(let v, let offset):
            return "byte \(offset): the peer speaks handshake version \(v); this side speaks \(TCPHandshake.version)"
        case .badMode(let m, let offset):
            return "byte \(offset): the peer's mode byte is \(m), not 0 (plain) or 1 (Noise)"
        case .badRole(let r, let offset, let local):
            return "byte \(offset): the peer's role byte is \(r), but this side is the \(local) (expected \(local == .initiator ? 2 : 1))"
        case .reservedNotZero(let b, let offset):
            return "byte \(offset): the reserved handshake byte is \(b), not 0"
        case .localHasNoKey:
            return "the peer requires a cluster key and this side has no cluster key configured"
        case .peerHasNoKey:
            return "this side requires a cluster key and the peer offered none (it has no cluster key)"
        case .messageNotAuthenticated(let offset, let message):
            return "the peer's \(message) at byte \(offset) does not authenticate under this side's cluster key (the keys differ, or the bytes were tampered with or replayed)"
        case .invalidEphemeralKey(let offset):
            return "the peer's ephemeral key at byte \(offset) is not a usable X25519 public key"
        case .badConfirmation(let offset, let length):
            return "the confirmation record at byte \(offset) announces \(length) bytes, not \(TCPHandshake.identitySize + NoiseCipherState.tagSize)"
        case .timedOut(let after, let what):
            return "handshake timed out after \(after) waiting for \(what)"
        case .peerClosed(let n, let keyed):
            return "the peer closed the connection during the handshake after \(n) bytes"
                + (keyed ? " (it refuses this side's cluster key, or is not a SpindleTCP peer)" : "")
        case .cryptoFailure(let why):
            return "handshake crypto failed: \(why)"
        }
    }

    private func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }
}
