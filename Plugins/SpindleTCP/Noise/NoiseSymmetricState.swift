import Crypto

/// The Noise protocol's `SymmetricState` with SHA-256 (specification revision 34, §5.2): the
/// chaining key `ck`, the handshake hash `h` and the cipher state keyed from them.
struct NoiseSymmetricState {
    static let hashSize = 32

    private(set) var chainingKey: [UInt8]
    /// The handshake hash: every byte of the transcript so far, hashed in order.
    private(set) var handshakeHash: [UInt8]
    private(set) var cipher = NoiseCipherState()

    /// InitializeSymmetric: `h` is the protocol name zero-padded to 32 bytes, or its hash when
    /// longer; `ck = h`.
    init(protocolName: String) {
        let name = Array(protocolName.utf8)
        if name.count <= Self.hashSize {
            handshakeHash = name + [UInt8](repeating: 0, count: Self.hashSize - name.count)
        } else {
            handshakeHash = Array(SHA256.hash(data: name))
        }
        chainingKey = handshakeHash
    }

    /// `h = SHA-256(h ‖ data)`.
    mutating func mixHash(_ data: [UInt8]) {
        var hasher = SHA256()
        hasher.update(data: handshakeHash)
        hasher.update(data: data)
        handshakeHash = Array(hasher.finalize())
    }

    /// `ck, k = HKDF(ck, ikm)`; the cipher is keyed with `k` (nonce 0).
    mutating func mixKey(_ inputKeyMaterial: [UInt8]) {
        let out = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 2)
        chainingKey = out[0]
        cipher.initializeKey(out[1])
    }

    /// `ck, t, k = HKDF(ck, ikm)`; `h` absorbs `t`; the cipher is keyed with `k`. How a
    /// pre-shared key enters the handshake.
    mutating func mixKeyAndHash(_ inputKeyMaterial: [UInt8]) {
        let out = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 3)
        chainingKey = out[0]
        mixHash(out[1])
        cipher.initializeKey(out[2])
    }

    /// Encrypts `plaintext` with `h` as associated data and absorbs the ciphertext into `h`.
    mutating func encryptAndHash(_ plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        let ciphertext = try cipher.encrypt(ad: handshakeHash, plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    /// Decrypts `ciphertext` with `h` as associated data and absorbs it into `h`.
    mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(NoiseError) -> [UInt8] {
        let plaintext = try cipher.decrypt(ad: handshakeHash, ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// The two transport keys: initiator → responder first, responder → initiator second.
    func split() -> (initiatorToResponder: [UInt8], responderToInitiator: [UInt8]) {
        let out = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: [], outputs: 2)
        return (out[0], out[1])
    }

    /// Noise's HKDF: HMAC-SHA256 extract with `ck` as salt, then `outputs` (2 or 3) blocks of
    /// expansion, each `HMAC(temp, previous ‖ counter)`.
    static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        let temp = SymmetricKey(data: hmac(key: SymmetricKey(data: chainingKey), inputKeyMaterial))
        var result: [[UInt8]] = []
        var previous: [UInt8] = []
        for counter in 1...UInt8(outputs) {
            previous = hmac(key: temp, previous + [counter])
            result.append(previous)
        }
        return result
    }

    private static func hmac(key: SymmetricKey, _ data: [UInt8]) -> [UInt8] {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: data)
        return Array(mac.finalize())
    }
}
