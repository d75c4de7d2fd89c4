import Crypto
import Foundation

/// The Noise protocol's `CipherState` for ChaChaPoly: a key and a 64-bit counter nonce
/// (Noise specification revision 34, §5.1 and §12.3).
///
/// The nonce of the AEAD is 32 zero bits followed by the counter, little-endian. The counter
/// value 2⁶⁴−1 is reserved; reaching it is an error, never a wrap. Not `Sendable` (swift-crypto's
/// `SymmetricKey` is not): a cipher state belongs to one connection's loop thread.
struct NoiseCipherState {
    /// Bytes the AEAD adds to every ciphertext.
    static let tagSize = 16

    /// Nil until `initializeKey` (then encryption is the identity, as the spec says).
    private(set) var key: SymmetricKey?
    /// The next nonce.
    private(set) var nonce: UInt64 = 0

    init() {}

    init(key: [UInt8]) { initializeKey(key) }

    var hasKey: Bool { key != nil }

    mutating func initializeKey(_ bytes: [UInt8]) {
        key = SymmetricKey(data: bytes)
        nonce = 0
    }

    /// The ChaChaPoly nonce for counter `n`: four zero bytes, then `n` little-endian.
    static func aeadNonce(_ n: UInt64) -> ChaChaPoly.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: n.littleEndian) { raw in
            for i in 0..<8 { bytes[4 + i] = raw[i] }
        }
        // 12 bytes is the only length ChaChaPoly.Nonce refuses anything but; it cannot fail.
        return try! ChaChaPoly.Nonce(data: bytes)
    }

    /// Encrypts `plaintext` with associated data `ad` and advances the nonce; without a key it
    /// returns the plaintext (Noise's EncryptWithAd).
    mutating func encrypt(ad: [UInt8], _ plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return plaintext }
        guard nonce < .max else { throw .nonceExhausted }
        do {
            let box = try ChaChaPoly.seal(plaintext, using: key, nonce: Self.aeadNonce(nonce), authenticating: ad)
            nonce += 1
            return Array(box.ciphertext) + Array(box.tag)
        } catch {
            throw .cryptoFailure("\(error)")
        }
    }

    /// Decrypts and authenticates `ciphertext` (ciphertext ‖ 16-byte tag) and advances the
    /// nonce; without a key it returns the input (Noise's DecryptWithAd).
    mutating func decrypt(ad: [UInt8], _ ciphertext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce < .max else { throw .nonceExhausted }
        guard ciphertext.count >= Self.tagSize else { throw .authenticationFailed }
        let split = ciphertext.count - Self.tagSize
        do {
            let box = try ChaChaPoly.SealedBox(nonce: Self.aeadNonce(nonce), ciphertext: ciphertext[..<split],
                                               tag: ciphertext[split...])
            let plaintext = try ChaChaPoly.open(box, using: key, authenticating: ad)
            nonce += 1
            return Array(plaintext)
        } catch {
            throw .authenticationFailed
        }
    }
}

extension NoiseCipherState {
    /// Seals `plaintext` (empty associated data, as Noise transport messages use) into
    /// `output` as ciphertext ‖ tag: `plaintext.count + tagSize` bytes.
    mutating func seal(_ plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(NoiseError) {
        guard let key else { throw .cryptoFailure("seal without a key") }
        guard nonce < .max else { throw .nonceExhausted }
        let box: ChaChaPoly.SealedBox
        do {
            box = try ChaChaPoly.seal(plaintext, using: key, nonce: Self.aeadNonce(nonce))
        } catch {
            throw .cryptoFailure("\(error)")
        }
        nonce += 1
        let ciphertext = box.ciphertext, tag = box.tag
        ciphertext.copyBytes(to: UnsafeMutableRawBufferPointer(start: output, count: ciphertext.count))
        tag.copyBytes(to: UnsafeMutableRawBufferPointer(start: output + ciphertext.count, count: tag.count))
    }

    /// Opens `sealed` (ciphertext ‖ tag, empty associated data) into `output`; returns the
    /// plaintext's length (`sealed.count - tagSize`).
    mutating func open(_ sealed: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(NoiseError) -> Int {
        guard let key else { throw .cryptoFailure("open without a key") }
        guard nonce < .max else { throw .nonceExhausted }
        guard sealed.count >= Self.tagSize else { throw .authenticationFailed }
        let split = sealed.count - Self.tagSize
        let plaintext: Data
        do {
            let box = try ChaChaPoly.SealedBox(nonce: Self.aeadNonce(nonce),
                                               ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<split]),
                                               tag: UnsafeRawBufferPointer(rebasing: sealed[split...]))
            plaintext = try ChaChaPoly.open(box, using: key)
        } catch {
            throw .authenticationFailed
        }
        nonce += 1
        plaintext.copyBytes(to: UnsafeMutableRawBufferPointer(start: output, count: plaintext.count))
        return plaintext.count
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
