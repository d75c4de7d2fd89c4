/// A hash that is the same in every process and on every run: FNV-1a over the key's bytes,
/// finished with a 64-bit avalanche mix.
///
/// Swift's `Hasher` is seeded per process, so it cannot place keys consistently across a
/// coordinator and its remote shards; this can.
public enum StableHash {
    static let fnv1aOffset: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnv1aPrime: UInt64 = 0x0000_0100_0000_01b3

    /// The hash of `bytes`.
    public static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var h = fnv1aOffset
        for b in bytes {
            h ^= UInt64(b)
            h &*= fnv1aPrime
        }
        return mix(h)
    }

    /// The hash of a string's UTF-8 bytes.
    public static func hash(_ text: String) -> UInt64 { hash(text.utf8) }

    /// The hash of a 64-bit key's eight little-endian bytes.
    public static func hash(_ key: UInt64) -> UInt64 { mix(fnv1a(word: key, into: fnv1aOffset)) }

    /// Feeds the eight little-endian bytes of `word` into an FNV-1a state.
    static func fnv1a(word: UInt64, into state: UInt64) -> UInt64 {
        var h = state
        var w = word
        for _ in 0..<8 {
            h ^= w & 0xff
            h &*= 0x0000_0100_0000_01b3
            w >>= 8
        }
        return h
    }

    /// The 64-bit finaliser of MurmurHash3: every input bit affects every output bit.
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z ^= z >> 33
        z &*= 0xff51_afd7_ed55_8ccd
        z ^= z >> 33
        z &*= 0xc4ce_b9fe_1a85_ec53
        z ^= z >> 33
        return z
    }
}
