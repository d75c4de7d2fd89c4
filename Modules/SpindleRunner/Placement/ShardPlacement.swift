import SpindleKernel

/// Consistent-hash placement of keys on shards, with virtual nodes and a stable hash.
///
/// Each shard owns `virtualNodes` points on a 64-bit ring at `StableHash("<shard>#<i>")`; a key
/// belongs to the shard of the first point at or after the key's hash (wrapping). The same
/// shards give the same placement in every process, and adding a shard moves only the keys
/// its new points take over: about 1/n of them.
public struct ShardPlacement: Sendable, Equatable {
    /// The shards placed, in increasing order.
    public private(set) var shards: [ShardID]
    public let virtualNodes: Int
    private var points: [UInt64] = []
    private var owners: [ShardID] = []

    /// - Parameters:
    ///   - shards: the shards to place keys on (duplicates are ignored).
    ///   - virtualNodes: points per shard on the ring (at least 1).
    public init(shards: some Sequence<ShardID>, virtualNodes: Int = 256) {
        self.virtualNodes = max(1, virtualNodes)
        self.shards = Array(Set(shards)).sorted()
        rebuild()
    }

    /// Whether no shard is placed (every lookup then returns nil).
    public var isEmpty: Bool { shards.isEmpty }

    /// The shard that owns `key`.
    public func owner(of key: NodeKey) -> ShardID? { owner(ofHash: StableHash.hash(key.rawValue)) }

    /// The shard that owns the string key `key`.
    public func owner(of key: String) -> ShardID? { owner(ofHash: StableHash.hash(key)) }

    /// The shard that owns a key whose stable hash is `hash`.
    public func owner(ofHash hash: UInt64) -> ShardID? {
        guard !points.isEmpty else { return nil }
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid] < hash { lo = mid + 1 } else { hi = mid }
        }
        return owners[lo == points.count ? 0 : lo]
    }

    /// The placement with `shard` added.
    public func adding(_ shard: ShardID) -> ShardPlacement {
        ShardPlacement(shards: shards + [shard], virtualNodes: virtualNodes)
    }

    /// The placement with `shard` removed.
    public func removing(_ shard: ShardID) -> ShardPlacement {
        ShardPlacement(shards: shards.filter { $0 != shard }, virtualNodes: virtualNodes)
    }

    private mutating func rebuild() {
        var ring: [(UInt64, ShardID)] = []
        ring.reserveCapacity(shards.count * virtualNodes)
        for s in shards {
            for v in 0..<virtualNodes {
                ring.append((StableHash.hash("\(s)#\(v)"), s))
            }
        }
        // Ties (astronomically unlikely) break by shard id so every process agrees.
        ring.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        points = ring.map(\.0)
        owners = ring.map(\.1)
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.shards == b.shards && a.virtualNodes == b.virtualNodes
    }
}
