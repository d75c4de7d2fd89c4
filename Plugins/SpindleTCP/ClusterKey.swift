import Crypto

/// The shared secret every member of a cluster holds: a random 256-bit key. It keys the Noise
/// handshake (as its pre-shared key), so only holders of the key can complete a connection,
/// and nothing a peer without it observes lets it test a guess.
///
/// Make one with `ClusterKey.random()`, or on the command line with `spindle keygen FILE`
/// (then `ClusterKey(contentsOfFile:)`). The key's bytes never appear in logs or descriptions.
public struct ClusterKey: Sendable, CustomStringConvertible {
    /// Bytes in a key: 256 bits.
    public static let byteCount = 32

    /// The key bytes (kept as plain bytes so the type is Sendable; `SymmetricKey` is not).
    let bytes: [UInt8]

    /// Uses `bytes` as the key.
    /// - Throws: `ClusterKeyError` unless exactly `byteCount` bytes are given.
    public init(bytes: [UInt8]) throws(ClusterKeyError) {
        guard bytes.count == Self.byteCount else {
            throw ClusterKeyError(byteCount: bytes.count)
        }
        self.bytes = bytes
    }

    /// A fresh random 256-bit key from the system's secure generator.
    public static func random() -> ClusterKey {
        ClusterKey(randomBytes: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    private init(randomBytes: [UInt8]) { bytes = randomBytes }

    public var description: String { "ClusterKey(\(bytes.count * 8) bits, redacted)" }
}

/// Key material of the wrong size.
public struct ClusterKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// How many bytes were given.
    public var byteCount: Int

    public var description: String {
        "cluster key has \(byteCount) bytes (\(byteCount * 8) bits); a cluster key is exactly \(ClusterKey.byteCount) random bytes (256 bits)"
    }
}
