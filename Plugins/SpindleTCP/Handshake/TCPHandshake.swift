import Crypto
import SpindleKernel

/// The handshake every SpindleTCP connection starts with, as a state machine without I/O:
/// bytes and clock ticks in, actions out. Two modes, picked by whether a cluster key is set:
///
/// ```
///  keyed (Noise_NNpsk0_25519_AESGCM_SHA256, prologue = the initiator's preamble):
///   initiator                                              responder
///     │ ── PREAMBLE(mode 1) ‖ e_i ‖ AEAD(ø) ─────────────────▶ │  psk, e: proves the key
///     │ ◀──────────────── PREAMBLE(mode 1) ‖ e_r ‖ AEAD(id_r) ── │  e, ee: proves the key
///     │ ── record 0: AEAD(id_i) under the new transport key ──▶ │  proves it is live
///     │ ═════════ records: AEAD(frames), counter nonces ═══════ │
///
///  plain (both sides without a key; loopback only):
///     │ ── PREAMBLE(mode 0) ‖ id_i ──▶ │
///     │ ◀── PREAMBLE(mode 0) ‖ id_r ── │
///     │ ═══════════ frames ═══════════ │
/// ```
///
/// The responder answers nothing a peer without the key could test a guess against: it
/// replies only after the first message authenticated. The initiator's confirmation record is
/// encrypted under keys that depend on the responder's fresh ephemeral key, so a recorded
/// session replayed to a responder fails here, before the connection is accepted. `id` is the
/// sender's 16-byte `NodeID` (zeros for none); it fixes the source of the connection's
/// envelopes. The byte layout is in docs/tcp.md ("Handshake").
struct TCPHandshake {
    /// Which end of the connection this side is.
    enum Role: UInt8, Sendable, CustomStringConvertible {
        /// The side that connected.
        case initiator = 1
        /// The side that accepted.
        case acceptor = 2

        var description: String { self == .initiator ? "initiator" : "acceptor" }
    }

    /// How the connection is protected.
    enum Mode: UInt8, Sendable {
        /// Frames in the clear: neither side holds a key.
        case plain = 0
        /// The Noise handshake, then AEAD records.
        case noise = 1
    }

    /// The result of a successful handshake.
    struct Session {
        /// The node id the peer announced (nil: it announced none).
        var peerNode: NodeID?
        /// Record ciphers (keyed mode): sealing what this side sends, opening what it receives.
        var send: NoiseCipherState?
        var receive: NoiseCipherState?
        /// The handshake hash (keyed mode): names this session's transcript.
        var handshakeHash: [UInt8]
        /// Bytes received after the handshake: the start of the record (or frame) stream.
        var leftover: [UInt8]
        /// Offset of `leftover[0]` in the peer's byte stream.
        var leftoverOffset: Int

        var isEncrypted: Bool { send != nil }
    }

    /// What the shell must do.
    enum Action {
        /// Write these bytes to the peer (as they are: handshake bytes are never sealed).
        case send([UInt8])
        /// The handshake succeeded.
        case established(Session)
        /// The handshake failed: close the connection (after flushing what was sent).
        case fail(TCPHandshakeError)
    }

    enum Phase: Sendable, Equatable {
        case awaitingPreamble, awaitingMessage, awaitingConfirmation, established, failed
    }

    /// The four bytes every preamble starts with: ASCII "SPTC".
    static let magic: [UInt8] = [0x53, 0x50, 0x54, 0x43]
    /// The handshake version this implementation speaks (version 1 was the HMAC proof exchange).
    static let version: UInt8 = 2
    static let preambleSize = 8
    /// Bytes of an announced node id.
    static let identitySize = 16
    /// Bytes of the initiator's Noise message (an empty payload).
    static let firstMessageSize = NoiseNNpsk0.firstMessageSize(payloadCount: 0)
    /// Bytes of the responder's Noise message (its identity as payload).
    static let secondMessageSize = NoiseNNpsk0.secondMessageSize(payloadCount: identitySize)
    /// Bytes of the confirmation record: header plus sealed identity.
    static let confirmationSize = RecordLayout.headerSize + identitySize + NoiseCipherState.tagSize

    let role: Role
    private let key: ClusterKey?
    private let localNode: NodeID?
    private let deadline: MonotonicInstant
    private let timeout: Duration
    private(set) var phase: Phase = .awaitingPreamble
    private let ephemeral: Curve25519.KeyAgreement.PrivateKey
    private var noise: NoiseNNpsk0?
    private var pendingSession: Session?
    private var pending: [UInt8] = []
    /// Stream offset of `pending[0]` among the bytes received from the peer.
    private var pendingOffset = 0
    /// The peer's mode, once its preamble has been read.
    private var peerMode: Mode?

    /// Creates the handshake for one connection.
    /// - Parameters:
    ///   - role: whether this side connected or accepted.
    ///   - key: the cluster key, or nil to run in the clear.
    ///   - localNode: the node id this side announces (nil: none).
    ///   - ephemeral: the X25519 ephemeral key (fresh per connection; tests pass fixed ones).
    ///   - now: the current time; the handshake fails at `now + timeout`.
    ///   - timeout: how long the peer has to complete it.
    init(role: Role, key: ClusterKey?, localNode: NodeID?,
         ephemeral: Curve25519.KeyAgreement.PrivateKey = Curve25519.KeyAgreement.PrivateKey(),
         now: MonotonicInstant, timeout: Duration) {
        self.role = role
        self.key = key
        self.localNode = localNode
        self.deadline = now + timeout
        self.timeout = timeout
        self.ephemeral = ephemeral
        // The prologue is the initiator's preamble: the acceptor's state starts once it has
        // read (and checked) it.
        if let key, role == .initiator {
            noise = NoiseNNpsk0(role: .initiator, prologue: Self.preamble(role: .initiator, mode: .noise),
                                psk: key.bytes, ephemeral: ephemeral)
        }
    }

    var mode: Mode { key == nil ? .plain : .noise }

    /// The instant at which `tick(now:)` fails the handshake.
    var expiresAt: MonotonicInstant { deadline }

    /// Encodes a preamble.
    static func preamble(role: Role, mode: Mode) -> [UInt8] {
        magic + [version, mode.rawValue, role.rawValue, 0]
    }

    /// A node id as its 16 identity bytes (zeros for none).
    static func identity(_ node: NodeID?) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: identitySize)
        if let node {
            bytes.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: node.raw.high.littleEndian, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: node.raw.low.littleEndian, toByteOffset: 8, as: UInt64.self)
            }
        }
        return bytes
    }

    /// The node id in 16 identity bytes (nil for zeros).
    static func node(fromIdentity bytes: [UInt8]) -> NodeID? {
        guard bytes.count == identitySize, bytes.contains(where: { $0 != 0 }) else { return nil }
        return bytes.withUnsafeBytes { raw in
            NodeID(raw: RawID128(high: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                                 low: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))))
        }
    }

    /// The first actions: the initiator's opening message (the acceptor waits).
    mutating func start() -> [Action] {
        guard role == .initiator else { return [] }
        let opening = Self.preamble(role: .initiator, mode: mode)
        switch mode {
        case .plain:
            return [.send(opening + Self.identity(localNode))]
        case .noise:
            do {
                return [.send(opening + (try noise!.writeFirst(payload: [])))]
            } catch {
                return [fail(.cryptoFailure(error.description))]
            }
        }
    }

    /// Feeds bytes received from the peer.
    mutating func receive(_ bytes: UnsafeRawBufferPointer) -> [Action] {
        guard phase != .established && phase != .failed else { return [] }
        pending.append(contentsOf: bytes)
        var actions: [Action] = []
        while true {
            switch phase {
            case .awaitingPreamble:
                if let failure = checkPreamblePrefix() { return actions + [fail(failure)] }
                guard pending.count >= Self.preambleSize else { return actions }
                let peer = Mode(rawValue: pending[5])!
                if let mismatch = modeMismatch(peer: peer) {
                    // Tell the initiator which mode this side needs, so its error is exact.
                    if role == .acceptor { actions.append(.send(Self.preamble(role: .acceptor, mode: mode))) }
                    return actions + [fail(mismatch)]
                }
                peerMode = peer
                consume(Self.preambleSize)
                phase = .awaitingMessage
            case .awaitingMessage:
                let needed = mode == .plain ? Self.identitySize
                    : (role == .acceptor ? Self.firstMessageSize : Self.secondMessageSize)
                guard pending.count >= needed else { return actions }
                let message = Array(pending[..<needed])
                let offset = pendingOffset
                consume(needed)
                switch readMessage(message, at: offset) {
                case .failure(let failure): return actions + [fail(failure.kind)]
                case .success(let more): actions += more
                }
                if phase == .established || phase == .failed { return actions }
            case .awaitingConfirmation:
                guard pending.count >= RecordLayout.headerSize else { return actions }
                let length = Int(pending[0]) | Int(pending[1]) << 8
                guard length == Self.identitySize + NoiseCipherState.tagSize else {
                    return actions + [fail(.badConfirmation(offset: pendingOffset, length: length))]
                }
                guard pending.count >= Self.confirmationSize else { return actions }
                let sealed = Array(pending[RecordLayout.headerSize..<Self.confirmationSize])
                let offset = pendingOffset
                consume(Self.confirmationSize)
                guard var session = pendingSession, var receive = session.receive else {
                    return actions + [fail(.cryptoFailure("confirmation without a session"))]
                }
                let identity: [UInt8]
                do {
                    identity = try receive.decrypt(ad: [], sealed)
                } catch {
                    return actions + [fail(.messageNotAuthenticated(offset: offset, message: "confirmation record"))]
                }
                session.receive = receive
                session.peerNode = Self.node(fromIdentity: identity)
                return actions + [establish(session)]
            case .established, .failed:
                return actions
            }
        }
    }

    /// Reports that the peer closed the connection (or it failed) before the handshake ended.
    mutating func peerClosed() -> [Action] {
        guard phase != .established && phase != .failed else { return [] }
        return [fail(.peerClosed(afterBytes: pendingOffset + pending.count, duringKeyedHandshake: mode == .noise))]
    }

    /// Fails the handshake if its deadline has passed.
    mutating func tick(now: MonotonicInstant) -> [Action] {
        guard phase != .established && phase != .failed, now >= deadline else { return [] }
        let stage: String
        switch phase {
        case .awaitingPreamble: stage = "the peer's preamble"
        case .awaitingMessage: stage = mode == .plain ? "the peer's identity" : "the peer's handshake message"
        default: stage = "the initiator's confirmation record"
        }
        return [fail(.timedOut(after: timeout, waitingFor: stage))]
    }

    // MARK: internals

    private mutating func consume(_ n: Int) {
        pending.removeFirst(n)
        pendingOffset += n
    }

    private mutating func fail(_ kind: TCPHandshakeError.Kind) -> Action {
        phase = .failed
        pending = []
        noise = nil
        pendingSession = nil
        var e = TCPHandshakeError(kind)
        e.localRequiresAuthentication = key != nil
        return .fail(e)
    }

    private mutating func establish(_ session: Session) -> Action {
        phase = .established
        noise = nil
        pendingSession = nil
        var s = session
        s.leftover = pending
        s.leftoverOffset = pendingOffset
        pending = []
        return .established(s)
    }

    /// Rejects garbage as soon as the first wrong byte arrives, without waiting for the rest.
    private func checkPreamblePrefix() -> TCPHandshakeError.Kind? {
        for i in 0..<min(pending.count, Self.magic.count) where pending[i] != Self.magic[i] {
            return .badMagic(offset: pendingOffset + i, byte: pending[i])
        }
        if pending.count > 4, pending[4] != Self.version {
            return .unsupportedVersion(pending[4], offset: pendingOffset + 4)
        }
        if pending.count > 5, Mode(rawValue: pending[5]) == nil {
            return .badMode(pending[5], offset: pendingOffset + 5)
        }
        if pending.count > 6, Role(rawValue: pending[6]) == nil || pending[6] == role.rawValue {
            return .badRole(pending[6], offset: pendingOffset + 6, local: role == .initiator ? .initiator : .acceptor)
        }
        if pending.count > 7, pending[7] != 0 {
            return .reservedNotZero(pending[7], offset: pendingOffset + 7)
        }
        return nil
    }

    private func modeMismatch(peer: Mode) -> TCPHandshakeError.Kind? {
        switch (mode, peer) {
        case (.plain, .noise): return .localHasNoKey
        case (.noise, .plain): return .peerHasNoKey
        default: return nil
        }
    }

    /// Handles the peer's handshake message (identity in plain mode, a Noise message keyed).
    private mutating func readMessage(_ message: [UInt8], at offset: Int) -> Result<[Action], TCPHandshakeError> {
        let identity = Self.identity(localNode)
        if mode == .plain {
            let session = Session(peerNode: Self.node(fromIdentity: message), handshakeHash: [], leftover: [],
                                  leftoverOffset: 0)
            var actions: [Action] = []
            if role == .acceptor { actions.append(.send(Self.preamble(role: .acceptor, mode: .plain) + identity)) }
            actions.append(establish(session))
            return .success(actions)
        }
        guard let key else { return .failure(TCPHandshakeError(.cryptoFailure("no cluster key"))) }
        do throws(NoiseError) {
            switch role {
            case .acceptor:
                // The initiator's preamble, checked byte by byte, is the prologue.
                var noise = NoiseNNpsk0(role: .responder, prologue: Self.preamble(role: .initiator, mode: .noise),
                                        psk: key.bytes, ephemeral: ephemeral)
                do {
                    _ = try noise.readFirst(message)
                } catch {
                    return .failure(TCPHandshakeError(error == .invalidPublicKey ? .invalidEphemeralKey(offset: offset)
                                    : .messageNotAuthenticated(offset: offset, message: "first handshake message")))
                }
                let reply = try noise.writeSecond(payload: identity)
                let (send, receive) = noise.split()
                pendingSession = Session(peerNode: nil, send: send, receive: receive, handshakeHash: noise.handshakeHash,
                                         leftover: [], leftoverOffset: 0)
                phase = .awaitingConfirmation
                return .success([.send(Self.preamble(role: .acceptor, mode: .noise) + reply)])
            case .initiator:
                guard var noise else { return .failure(TCPHandshakeError(.cryptoFailure("no handshake state"))) }
                let peerIdentity: [UInt8]
                do {
                    peerIdentity = try noise.readSecond(message)
                } catch {
                    return .failure(TCPHandshakeError(error == .invalidPublicKey ? .invalidEphemeralKey(offset: offset)
                                    : .messageNotAuthenticated(offset: offset, message: "second handshake message")))
                }
                var (send, receive) = noise.split()
                let confirmation = try send.encrypt(ad: [], identity)
                let length = UInt16(confirmation.count)
                let record = [UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8)] + confirmation
                let session = Session(peerNode: Self.node(fromIdentity: peerIdentity), send: send, receive: receive,
                                      handshakeHash: noise.handshakeHash, leftover: [], leftoverOffset: 0)
                return .success([.send(record), establish(session)])
            }
        } catch {
            return .failure(TCPHandshakeError(.cryptoFailure(error.description)))
        }
    }
}
