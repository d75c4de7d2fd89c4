import CSpindleAEAD

/// An AES-256-GCM key with its schedule computed once: BoringSSL's `EVP_AEAD_CTX`.
final class AEADKey {
    // Not Sendable: a context is used by one connection's loop thread (BoringSSL allows
    // concurrent use of one context, but nothing here needs it).
    private let context: OpaquePointer

    /// - Precondition: `bytes` is 32 bytes (every key here comes from HKDF-SHA256).
    init(_ bytes: [UInt8]) {
        precondition(bytes.count == 32, "an AES-256-GCM key is 32 bytes")
        guard let context = CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_aes_256_gcm(), bytes, 32,
                                                              NoiseCipherState.tagSize) else {
            // Only allocation failure makes this return nil for a valid key length.
            fatalError("BoringSSL could not allocate an AEAD context")
        }
        self.context = context
    }

    deinit { CCryptoBoringSSL_EVP_AEAD_CTX_free(context) }

    /// Seals `input` into `output` (room for `input.count + tagSize`); returns false on failure.
    func seal(nonce: UnsafeRawPointer, ad: UnsafeRawBufferPointer, _ input: UnsafeRawBufferPointer,
              into output: UnsafeMutableRawPointer) -> Bool {
        var written = 0
        let ok = CCryptoBoringSSL_EVP_AEAD_CTX_seal(
            context, output.assumingMemoryBound(to: UInt8.self), &written, input.count + NoiseCipherState.tagSize,
            nonce.assumingMemoryBound(to: UInt8.self), 12,
            input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count,
            ad.baseAddress?.assumingMemoryBound(to: UInt8.self), ad.count)
        return ok == 1 && written == input.count + NoiseCipherState.tagSize
    }

    /// Opens `input` (ciphertext ‖ tag) into `output`; returns the plaintext length, or nil
    /// when it does not authenticate.
    func open(nonce: UnsafeRawPointer, ad: UnsafeRawBufferPointer, _ input: UnsafeRawBufferPointer,
              into output: UnsafeMutableRawPointer) -> Int? {
        var written = 0
        let ok = CCryptoBoringSSL_EVP_AEAD_CTX_open(
            context, output.assumingMemoryBound(to: UInt8.self), &written, max(0, input.count - NoiseCipherState.tagSize),
            nonce.assumingMemoryBound(to: UInt8.self), 12,
            input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count,
            ad.baseAddress?.assumingMemoryBound(to: UInt8.self), ad.count)
        guard ok == 1 else {
            CCryptoBoringSSL_ERR_clear_error()
            return nil
        }
        return written
    }
}

/// The Noise protocol's `CipherState` for AESGCM: a key and a 64-bit counter nonce (Noise
/// specification revision 34, §5.1 and §12.4).
///
/// The AES-GCM nonce is 32 zero bits followed by the counter, big-endian. The counter value
/// 2⁶⁴−1 is reserved; reaching it is an error, never a wrap. Not `Sendable`: a cipher state
/// belongs to one connection's loop thread.
struct NoiseCipherState {
    /// Bytes the AEAD adds to every ciphertext.
    static let tagSize = 16

    /// Nil until `initializeKey` (then encryption is the identity, as the spec says).
    private(set) var key: AEADKey?
    /// The next nonce.
    private(set) var nonce: UInt64 = 0

    init() {}

    init(key: [UInt8]) { initializeKey(key) }

    var hasKey: Bool { key != nil }

    mutating func initializeKey(_ bytes: [UInt8]) {
        key = AEADKey(bytes)
        nonce = 0
    }

    /// Runs `body` with the 12-byte AES-GCM nonce for counter `n`: four zero bytes, then `n`
    /// big-endian.
    @inline(__always)
    private static func withNonce<R>(_ n: UInt64, _ body: (UnsafeRawPointer) -> R) -> R {
        var nonce: (UInt32, UInt32, UInt32) = (0, UInt32(truncatingIfNeeded: n >> 32).bigEndian,
                                               UInt32(truncatingIfNeeded: n).bigEndian)
        return withUnsafeBytes(of: &nonce) { body($0.baseAddress!) }
    }

    /// Encrypts `plaintext` with associated data `ad` and advances the nonce; without a key it
    /// returns the plaintext (Noise's EncryptWithAd).
    mutating func encrypt(ad: [UInt8], _ plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return plaintext }
        guard nonce < .max else { throw .nonceExhausted }
        var out = [UInt8](repeating: 0, count: plaintext.count + Self.tagSize)
        let ok = Self.withNonce(nonce) { n in
            plaintext.withUnsafeBytes { p in
                ad.withUnsafeBytes { a in
                    out.withUnsafeMutableBytes { o in key.seal(nonce: n, ad: a, p, into: o.baseAddress!) }
                }
            }
        }
        guard ok else { throw .cryptoFailure("AES-GCM seal failed") }
        nonce += 1
        return out
    }

    /// Decrypts and authenticates `ciphertext` (ciphertext ‖ 16-byte tag) and advances the
    /// nonce; without a key it returns the input (Noise's DecryptWithAd).
    mutating func decrypt(ad: [UInt8], _ ciphertext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce < .max else { throw .nonceExhausted }
        guard ciphertext.count >= Self.tagSize else { throw .authenticationFailed }
        var out = [UInt8](repeating: 0, count: ciphertext.count - Self.tagSize + 1)
        let n = Self.withNonce(nonce) { n in
            ciphertext.withUnsafeBytes { c in
                ad.withUnsafeBytes { a in
                    out.withUnsafeMutableBytes { o in key.open(nonce: n, ad: a, c, into: o.baseAddress!) }
                }
            }
        }
        guard let n else { throw .authenticationFailed }
        nonce += 1
        return Array(out[..<n])
    }

    /// Seals `plaintext` (empty associated data, as Noise transport messages use) into
    /// `output` as ciphertext ‖ tag: `plaintext.count + tagSize` bytes.
    mutating func seal(_ plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(NoiseError) {
        guard let key else { throw .cryptoFailure("seal without a key") }
        guard nonce < .max else { throw .nonceExhausted }
        let ok = Self.withNonce(nonce) { n in key.seal(nonce: n, ad: UnsafeRawBufferPointer(start: nil, count: 0), plaintext, into: output) }
        guard ok else { throw .cryptoFailure("AES-GCM seal failed") }
        nonce += 1
    }

    /// Opens `sealed` (ciphertext ‖ tag, empty associated data) into `output`, which has room
    /// for `sealed.count - tagSize` bytes; returns the plaintext's length.
    mutating func open(_ sealed: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(NoiseError) -> Int {
        guard let key else { throw .cryptoFailure("open without a key") }
        guard nonce < .max else { throw .nonceExhausted }
        guard sealed.count >= Self.tagSize else { throw .authenticationFailed }
        let n = Self.withNonce(nonce) { n in key.open(nonce: n, ad: UnsafeRawBufferPointer(start: nil, count: 0), sealed, into: output) }
        guard let n else { throw .authenticationFailed }
        nonce += 1
        return n
    }
}

/// A failure of the Noise machinery.
enum NoiseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A ciphertext did not authenticate: wrong key, tampered or replayed bytes.
    case authenticationFailed
    /// The 2⁶⁴−1 messages a key may protect have been sent.
    case nonceExhausted
    /// A public key is not a valid X25519 point encoding, or the shared secret is all zero.
    case invalidPublicKey
    /// The crypto library refused an operation.
    case cryptoFailure(String)

    var description: String {
        switch self {
        case .authenticationFailed: return "the message does not authenticate (wrong key, or tampered or replayed bytes)"
        case .nonceExhausted: return "the session's nonces are exhausted"
        case .invalidPublicKey: return "the peer's ephemeral public key is invalid"
        case .cryptoFailure(let why): return "crypto operation failed: \(why)"
        }
    }
}
