/// How a `ShardPlacement` maps keys to shards.
///
/// - `hashed`: consistent hashing with virtual nodes. Keys are scattered evenly whatever
///   their values, and adding a shard moves only about 1/n of them. Neighbouring keys land on
///   different shards, so a model whose nodes talk to their neighbours sends most of that
///   traffic across shards.
/// - `ranges`: the key space `0..<keyCount` is cut into one contiguous range per shard (equal
///   sizes, in shard-id order), like arcs of a ring. Neighbouring keys stay together, so a
///   model with local structure (a ring, a grid in row order, a mesh numbered along a
///   space-filling curve) keeps most of its traffic inside shards. Adding a shard moves up to
///   half of the keys.
public enum PlacementStrategy: Sendable, Hashable, CustomStringConvertible {
    /// Consistent hashing with `virtualNodes` points per shard on a 64-bit ring.
    case hashed(virtualNodes: Int)
    /// Contiguous ranges of `0..<keyCount`; a larger key `k` is placed as `k % keyCount` (the key
    /// space is a ring cut into arcs). String keys are placed by their stable hash.
    case ranges(keyCount: UInt64)

    /// Consistent hashing with 256 virtual nodes per shard: the default.
    public static var consistentHashing: PlacementStrategy { .hashed(virtualNodes: 256) }

    /// A short name: `hashed` or `ranges`.
    public var name: String {
        switch self {
        case .hashed: return "hashed"
        case .ranges: return "ranges"
        }
    }

    public var description: String {
        switch self {
        case .hashed(let v): return "hashed (\(v) virtual nodes per shard)"
        case .ranges(let n): return "ranges of 0..<\(n)"
        }
    }

    /// The strategy with its parameters brought into range (at least one virtual node, a key
    /// count of at least one).
    var normalized: PlacementStrategy {
        switch self {
        case .hashed(let v): return .hashed(virtualNodes: max(1, v))
        case .ranges(let n): return .ranges(keyCount: max(1, n))
        }
    }
}
