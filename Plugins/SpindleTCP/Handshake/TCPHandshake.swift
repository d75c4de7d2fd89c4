import Crypto
import SpindleKernel

/// The preamble every SpindleTCP connection starts with, and the optional cluster-key
/// authentication, as a state machine without I/O: bytes and clock ticks in, actions out.
///
/// ```
///  initiator                                   acceptor
///     │ ── HELLO(role 1, flags, nonce Ni) ──────▶ │   both send HELLO at once
///     │ ◀────── HELLO(role 2, flags, nonce Na) ── │
///     │   only when both sides hold a cluster key:
///     │ ── PROOF = HMAC(key, L‖1‖Ni‖Na) ────────▶ │   each checks the other's PROOF
///     │ ◀──────── PROOF = HMAC(key, L‖2‖Ni‖Na) ── │
///     │ ════ frames (docs/wire-protocol.md) ═════ │
/// ```
///
/// `L` is the ASCII label `spindle-tcp-auth-v1`. A proof binds both nonces and the prover's
/// role, so replaying an old proof or reflecting the peer's own proof back fails. The byte
/// layout is documented in docs/tcp.md ("TCP handshake").
public struct TCPHandshake: Sendable {
    /// Which end of the connection this side is.
    public enum Role: UInt8, Sendable, CustomStringConvertible {
        /// The side that connected.
        case initiator = 1
        /// The side that accepted.
        case acceptor = 2

        public var description: String { self == .initiator ? "initiator" : "acceptor" }
    }

    /// What the shell must do.
    public enum Action: Sendable, Equatable {
        /// Write these bytes to the peer.
        case send([UInt8])
        /// The handshake succeeded; `leftover` are bytes that followed it (the start of the
        /// frame stream) and go to the frame decoder.
        case established(authenticated: Bool, leftover: [UInt8])
        /// The handshake failed: close the connection (after flushing what was sent).
        case fail(TCPHandshakeError)
    }

    /// Where the handshake stands.
    public enum Phase: Sendable, Equatable {
        case awaitingHello, awaitingProof, established, failed
    }

    /// The four bytes every HELLO starts with: ASCII "SPTC".
    public static let magic: [UInt8] = [0x53, 0x50, 0x54, 0x43]
    /// The preamble version this implementation speaks.
    public static let version: UInt8 = 1
    /// Bytes in a HELLO message.
    public static let helloSize = 40
    /// Bytes in a PROOF message (an HMAC-SHA256).
    public static let proofSize = 32
    /// Bytes in a nonce.
    public static let nonceSize = 32
    /// The domain-separation label hashed into every proof.
    public static let proofLabel: [UInt8] = Array("spindle-tcp-auth-v1".utf8)
    /// HELLO flag bit: the sender holds a cluster key and requires authentication.
    public static let flagAuthenticate: UInt8 = 0x01

    public let role: Role
    private let key: ClusterKey?
    private let localNonce: [UInt8]
    private let deadline: MonotonicInstant
    private let timeout: Duration
    public private(set) var phase: Phase = .awaitingHello
    private var pending: [UInt8] = []
    /// Stream offset of `pending[0]` among the bytes received from the peer.
    private var pendingOffset = 0
    private var expectedProof: [UInt8] = []

    /// Creates the handshake for one connection.
    /// - Parameters:
    ///   - role: whether this side connected or accepted.
    ///   - key: the cluster key, or nil to run without authentication.
    ///   - nonce: `nonceSize` fresh random bytes (pass `TCPHandshake.randomNonce()`; tests pass
    ///     fixed ones). Other lengths are padded with zeros or truncated.
    ///   - now: the current time; the handshake fails at `now + timeout`.
    ///   - timeout: how long the peer has to complete it.
    public init(role: Role, key: ClusterKey?, nonce: [UInt8], now: MonotonicInstant, timeout: Duration) {
        self.role = role
        self.key = key
        var n = Array(nonce.prefix(Self.nonceSize))
        n.append(contentsOf: repeatElement(0, count: Self.nonceSize - n.count))
        self.localNonce = n
        self.deadline = now + timeout
        self.timeout = timeout
    }

    /// Fresh random nonce bytes from the system's secure generator.
    public static func randomNonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &g) }
    }

    /// Whether this side requires authentication (it holds a key).
    public var requiresAuthentication: Bool { key != nil }

    /// The instant at which `tick(now:)` fails the handshake.
    public var expiresAt: MonotonicInstant { deadline }

    /// The first action: send this side's HELLO.
    public func start() -> [Action] {
        [.send(Self.hello(role: role, authenticate: key != nil, nonce: localNonce))]
    }

    /// Encodes a HELLO message.
    public static func hello(role: Role, authenticate: Bool, nonce: [UInt8]) -> [UInt8] {
        var out = magic
        out.reserveCapacity(helloSize)
        out.append(version)
        out.append(role.rawValue)
        out.append(authenticate ? flagAuthenticate : 0)
        out.append(0)
        var n = Array(nonce.prefix(nonceSize))
        n.append(contentsOf: repeatElement(0, count: nonceSize - n.count))
        out.append(contentsOf: n)
        return out
    }

    /// Computes the proof `prover` sends: HMAC-SHA256(key, label ‖ role ‖ initiator nonce ‖
    /// acceptor nonce).
    public static func proof(key: ClusterKey, prover: Role, initiatorNonce: [UInt8], acceptorNonce: [UInt8]) -> [UInt8] {
        var message = proofLabel
        message.append(prover.rawValue)
        message.append(contentsOf: initiatorNonce)
        message.append(contentsOf: acceptorNonce)
        let mac = message.withUnsafeBytes { bytes in
            var h = HMAC<SHA256>(key: key.symmetricKey)
            h.update(data: bytes)
            return h.finalize()
        }
        return mac.withUnsafeBytes { Array($0) }
    }

    /// Feeds bytes received from the peer.
    public mutating func receive(_ bytes: UnsafeRawBufferPointer) -> [Action] {
        guard phase == .awaitingHello || phase == .awaitingProof else { return [] }
        pending.append(contentsOf: bytes)
        var actions: [Action] = []
        while true {
            switch phase {
            case .awaitingHello:
                if let failure = checkHelloPrefix() { return actions + [fail(failure)] }
                guard pending.count >= Self.helloSize else { return actions }
                switch acceptHello() {
                case .failure(let failure): return actions + [fail(failure)]
                case .success(let proof?): actions.append(.send(proof))
                case .success(nil):
                    phase = .established
                    return actions + [.established(authenticated: false, leftover: pending)]
                }
            case .awaitingProof:
                guard pending.count >= Self.proofSize else { return actions }
                guard constantTimeEqual(pending.prefix(Self.proofSize), expectedProof) else {
                    return actions + [fail(TCPHandshakeError(.proofMismatch(offset: pendingOffset)))]
                }
                pending.removeFirst(Self.proofSize)
                pendingOffset += Self.proofSize
                phase = .established
                return actions + [.established(authenticated: true, leftover: pending)]
            case .established, .failed:
                return actions
            }
        }
    }

    /// Reports that the peer closed the connection (or it failed) before the handshake ended.
    public mutating func peerClosed() -> [Action] {
        guard phase == .awaitingHello || phase == .awaitingProof else { return [] }
        return [fail(TCPHandshakeError(.peerClosed(afterBytes: pendingOffset + pending.count)))]
    }

    /// Fails the handshake if its deadline has passed.
    public mutating func tick(now: MonotonicInstant) -> [Action] {
        guard phase == .awaitingHello || phase == .awaitingProof, now >= deadline else { return [] }
        let stage = phase == .awaitingHello ? "the peer's HELLO" : "the peer's PROOF"
        return [fail(TCPHandshakeError(.timedOut(after: timeout, waitingFor: stage)))]
    }

    // MARK: internals

    private mutating func fail(_ error: TCPHandshakeError) -> Action {
        phase = .failed
        pending = []
        var e = error
        e.localRequiresAuthentication = key != nil
        return .fail(e)
    }

    /// Rejects garbage as soon as the first wrong byte arrives, without waiting for 40 bytes.
    private func checkHelloPrefix() -> TCPHandshakeError? {
        for i in 0..<min(pending.count, Self.magic.count) where pending[i] != Self.magic[i] {
            return TCPHandshakeError(.badMagic(offset: pendingOffset + i, byte: pending[i]))
        }
        if pending.count > 4, pending[4] != Self.version {
            return TCPHandshakeError(.unsupportedVersion(pending[4], offset: pendingOffset + 4))
        }
        if pending.count > 5, Role(rawValue: pending[5]) == nil || pending[5] == role.rawValue {
            return TCPHandshakeError(.badRole(pending[5], offset: pendingOffset + 5, local: role))
        }
        return nil
    }

    /// Consumes a complete HELLO; returns the proof to send (nil when unauthenticated).
    private mutating func acceptHello() -> Result<[UInt8]?, TCPHandshakeError> {
        let peerAuthenticates = pending[6] & Self.flagAuthenticate != 0
        let peerNonce = Array(pending[8..<Self.helloSize])
        pending.removeFirst(Self.helloSize)
        pendingOffset += Self.helloSize
        switch (key, peerAuthenticates) {
        case (nil, false):
            return .success(nil)
        case (nil, true):
            return .failure(TCPHandshakeError(.localHasNoKey))
        case (.some, false):
            return .failure(TCPHandshakeError(.peerHasNoKey))
        case (let key?, true):
            let (ni, na) = role == .initiator ? (localNonce, peerNonce) : (peerNonce, localNonce)
            let peerRole: Role = role == .initiator ? .acceptor : .initiator
            expectedProof = Self.proof(key: key, prover: peerRole, initiatorNonce: ni, acceptorNonce: na)
            phase = .awaitingProof
            return .success(Self.proof(key: key, prover: role, initiatorNonce: ni, acceptorNonce: na))
        }
    }

    private func constantTimeEqual(_ a: ArraySlice<UInt8>, _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }
}
