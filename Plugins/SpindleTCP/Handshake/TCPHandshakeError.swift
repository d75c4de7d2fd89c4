/// Why a connection's preamble or authentication failed.
public struct TCPHandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: Sendable, Equatable {
        /// Byte `offset` of the peer's stream is `byte`, not the "SPTC" magic.
        case badMagic(offset: Int, byte: UInt8)
        /// The peer speaks another preamble version.
        case unsupportedVersion(UInt8, offset: Int)
        /// The peer's role byte is invalid or the same as ours.
        case badRole(UInt8, offset: Int, local: TCPHandshake.Role)
        /// The peer requires cluster-key authentication but this side has no key.
        case localHasNoKey
        /// This side requires cluster-key authentication but the peer offered none.
        case peerHasNoKey
        /// The peer's proof (starting at byte `offset` of its stream) does not match this
        /// side's key: the keys differ, or the proof was replayed or reflected.
        case proofMismatch(offset: Int)
        /// The handshake did not finish in time.
        case timedOut(after: Duration, waitingFor: String)
        /// The peer closed the connection after sending this many bytes of its preamble.
        case peerClosed(afterBytes: Int)
    }

    public var kind: Kind
    /// Whether this side holds a cluster key (set by the state machine).
    public var localRequiresAuthentication = false

    public init(_ kind: Kind) { self.kind = kind }

    /// True when the failure is about authentication (either side holds a key); otherwise it
    /// is a plain protocol violation of an unauthenticated preamble.
    public var isAuthenticationFailure: Bool {
        switch kind {
        case .localHasNoKey, .peerHasNoKey, .proofMismatch: return true
        default: return localRequiresAuthentication
        }
    }

    /// True when the peer refused or could not satisfy this side's key (the keys differ or one
    /// side has none).
    public var isKeyMismatch: Bool {
        switch kind {
        case .localHasNoKey, .peerHasNoKey, .proofMismatch: return true
        default: return false
        }
    }

    public var description: String {
        switch kind {
        case .badMagic(let offset, let byte):
            return "byte \(offset) of the peer's preamble is 0x\(hex(byte)), not the \"SPTC\" magic: the peer does not speak SpindleTCP"
        case .unsupportedVersion(let v, let offset):
            return "byte \(offset): peer speaks preamble version \(v); this side speaks \(TCPHandshake.version)"
        case .badRole(let r, let offset, let local):
            return "byte \(offset): peer's role byte is \(r), but this side is the \(local) (expected \(local == .initiator ? 2 : 1))"
        case .localHasNoKey:
            return "the peer requires cluster-key authentication and this side has no cluster key configured"
        case .peerHasNoKey:
            return "this side requires cluster-key authentication and the peer offered none (it has no cluster key)"
        case .proofMismatch(let offset):
            return "the peer's proof at bytes \(offset)..<\(offset + TCPHandshake.proofSize) does not match this side's cluster key (the keys differ)"
        case .timedOut(let after, let what):
            return "handshake timed out after \(after) waiting for \(what)"
        case .peerClosed(let n):
            return "the peer closed the connection during the handshake after \(n) bytes"
        }
    }

    private func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }
}
