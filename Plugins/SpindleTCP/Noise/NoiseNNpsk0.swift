import Crypto

/// The handshake `Noise_NNpsk0_25519_AESGCM_SHA256` (Noise specification revision 34,
/// §7.5 pattern NN with the `psk0` modifier of §9):
///
/// ```
///  NNpsk0:
///    -> psk, e          initiator: mixes the pre-shared key, then its fresh ephemeral key
///    <- e, ee           responder: its fresh ephemeral key, then DH(e_i, e_r)
/// ```
///
/// Both messages carry a payload encrypted under keys that depend on the pre-shared key, so
/// each side proves it holds the key, and the transport keys from `split()` depend on the
/// ephemeral DH as well (forward secrecy). In psk handshakes every `e` token also runs
/// `MixKey(e.public)`, which is why the first message's payload is already encrypted.
struct NoiseNNpsk0 {
    static let protocolName = "Noise_NNpsk0_25519_AESGCM_SHA256"
    /// Bytes of an X25519 public key.
    static let publicKeySize = 32

    enum Role { case initiator, responder }

    let role: Role
    private var symmetric: NoiseSymmetricState
    private let ephemeral: Curve25519.KeyAgreement.PrivateKey
    private let psk: [UInt8]
    private var remoteEphemeral: Curve25519.KeyAgreement.PublicKey?

    /// - Parameters:
    ///   - prologue: bytes both sides must agree on (hashed in, never sent by the handshake).
    ///   - psk: the 32-byte pre-shared key.
    ///   - ephemeral: this side's ephemeral key; fresh per handshake (tests pass fixed ones).
    init(role: Role, prologue: [UInt8], psk: [UInt8],
         ephemeral: Curve25519.KeyAgreement.PrivateKey = Curve25519.KeyAgreement.PrivateKey()) {
        self.role = role
        self.psk = psk
        self.ephemeral = ephemeral
        symmetric = NoiseSymmetricState(protocolName: Self.protocolName)
        symmetric.mixHash(prologue)
    }

    /// The handshake hash `h`: identifies this handshake's transcript (channel binding).
    var handshakeHash: [UInt8] { symmetric.handshakeHash }

    /// Bytes of the first message for a payload of `payloadCount` bytes.
    static func firstMessageSize(payloadCount: Int) -> Int { publicKeySize + payloadCount + NoiseCipherState.tagSize }
    /// Bytes of the second message for a payload of `payloadCount` bytes.
    static func secondMessageSize(payloadCount: Int) -> Int { publicKeySize + payloadCount + NoiseCipherState.tagSize }

    /// (Initiator) `-> psk, e` with `payload`.
    mutating func writeFirst(payload: [UInt8]) throws(NoiseError) -> [UInt8] {
        precondition(role == .initiator, "only the initiator writes the first message")
        symmetric.mixKeyAndHash(psk)
        let e = Array(ephemeral.publicKey.rawRepresentation)
        symmetric.mixHash(e)
        symmetric.mixKey(e)
        return e + (try symmetric.encryptAndHash(payload))
    }

    /// (Responder) reads `-> psk, e`; returns its payload.
    mutating func readFirst(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        precondition(role == .responder, "only the responder reads the first message")
        guard message.count >= Self.publicKeySize + NoiseCipherState.tagSize else { throw .authenticationFailed }
        symmetric.mixKeyAndHash(psk)
        let e = Array(message[..<Self.publicKeySize])
        try adoptRemoteEphemeral(e)
        symmetric.mixHash(e)
        symmetric.mixKey(e)
        return try symmetric.decryptAndHash(Array(message[Self.publicKeySize...]))
    }

    /// (Responder) `<- e, ee` with `payload`.
    mutating func writeSecond(payload: [UInt8]) throws(NoiseError) -> [UInt8] {
        precondition(role == .responder, "only the responder writes the second message")
        let e = Array(ephemeral.publicKey.rawRepresentation)
        symmetric.mixHash(e)
        symmetric.mixKey(e)
        symmetric.mixKey(try dh())
        return e + (try symmetric.encryptAndHash(payload))
    }

    /// (Initiator) reads `<- e, ee`; returns its payload.
    mutating func readSecond(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        precondition(role == .initiator, "only the initiator reads the second message")
        guard message.count >= Self.publicKeySize + NoiseCipherState.tagSize else { throw .authenticationFailed }
        let e = Array(message[..<Self.publicKeySize])
        try adoptRemoteEphemeral(e)
        symmetric.mixHash(e)
        symmetric.mixKey(e)
        symmetric.mixKey(try dh())
        return try symmetric.decryptAndHash(Array(message[Self.publicKeySize...]))
    }

    /// The transport cipher states once both messages are done: (this side's sending,
    /// this side's receiving).
    func split() -> (send: NoiseCipherState, receive: NoiseCipherState) {
        let (toResponder, toInitiator) = symmetric.split()
        switch role {
        case .initiator: return (NoiseCipherState(key: toResponder), NoiseCipherState(key: toInitiator))
        case .responder: return (NoiseCipherState(key: toInitiator), NoiseCipherState(key: toResponder))
        }
    }

    private mutating func adoptRemoteEphemeral(_ bytes: [UInt8]) throws(NoiseError) {
        do {
            remoteEphemeral = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes)
        } catch {
            throw .invalidPublicKey
        }
    }

    /// DH(e, re): X25519 of this side's ephemeral key with the peer's.
    private func dh() throws(NoiseError) -> [UInt8] {
        guard let remoteEphemeral else { throw .invalidPublicKey }
        do {
            let secret = try ephemeral.sharedSecretFromKeyAgreement(with: remoteEphemeral)
            return secret.withUnsafeBytes { Array($0) }
        } catch {
            // BoringSSL refuses a low-order point (an all-zero shared secret).
            throw .invalidPublicKey
        }
    }
}
