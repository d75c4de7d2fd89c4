import Crypto

/// The shared secret every member of a cluster holds; peers prove they know it in the TCP
/// handshake without sending it.
///
/// Make one from at least 16 random bytes (`ClusterKey(bytes:)`, `ClusterKey.random()`) or
/// derive one from a passphrase (`ClusterKey(passphrase:)`, SHA-256 of its UTF-8 bytes).
/// The key's bytes never appear in logs or descriptions.
public struct ClusterKey: Sendable, CustomStringConvertible {
    /// Fewest key bytes accepted by `init(bytes:)`.
    public static let minimumByteCount = 16

    /// The key bytes (kept as plain bytes so the type is Sendable; `SymmetricKey` is not).
    let bytes: [UInt8]

    /// The key in the form swift-crypto's HMAC takes.
    var symmetricKey: SymmetricKey { bytes.withUnsafeBytes { SymmetricKey(data: $0) } }

    /// Uses `bytes` as the key.
    /// - Throws: `ClusterKeyError` when fewer than `minimumByteCount` bytes are given.
    public init(bytes: [UInt8]) throws(ClusterKeyError) {
        guard bytes.count >= Self.minimumByteCount else {
            throw ClusterKeyError(byteCount: bytes.count)
        }
        self.bytes = bytes
    }

    /// Derives a key from a passphrase (SHA-256 of its UTF-8 bytes). Every node given the same
    /// passphrase gets the same key.
    public init(passphrase: String) {
        let digest = SHA256.hash(data: Array(passphrase.utf8))
        bytes = digest.withUnsafeBytes { Array($0) }
    }

    /// A fresh random 256-bit key.
    public static func random() -> ClusterKey {
        ClusterKey(randomBytes: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    private init(randomBytes: [UInt8]) { bytes = randomBytes }

    public var description: String { "ClusterKey(\(bytes.count * 8) bits, redacted)" }
}

/// A cluster key that is too short to be used.
public struct ClusterKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// How many bytes were given.
    public var byteCount: Int

    public var description: String {
        "cluster key has \(byteCount) bytes; at least \(ClusterKey.minimumByteCount) are required"
    }
}
