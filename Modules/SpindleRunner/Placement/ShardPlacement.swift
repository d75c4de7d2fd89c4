import SpindleKernel

/// Where every key lives: a map from keys to shards, by consistent hashing or by contiguous
/// ranges (`PlacementStrategy`).
///
/// Consistent hashing gives each shard `virtualNodes` points on a 64-bit ring at
/// `StableHash("<shard>#<i>")`; a key belongs to the shard of the first point at or after the
/// key's hash (wrapping). Ranges cut `0..<keyCount` into one contiguous range per shard. Either
/// way the same shards give the same placement in every process.
public struct ShardPlacement: Sendable, Equatable {
    /// The shards placed, in increasing order.
    public private(set) var shards: [ShardID]
    public let strategy: PlacementStrategy
    /// Ring points (hashed) in increasing order, and the position in `shards` of each point's owner.
    private var points: [UInt64] = []
    private var owners: [Int32] = []

    /// Consistent hashing over `shards` (duplicates are ignored), `virtualNodes` points per shard.
    public init(shards: some Sequence<ShardID>, virtualNodes: Int = 256) {
        self.init(shards: shards, strategy: .hashed(virtualNodes: virtualNodes))
    }

    /// A placement of `shards` (duplicates are ignored) by `strategy`.
    public init(shards: some Sequence<ShardID>, strategy: PlacementStrategy) {
        self.strategy = strategy.normalized
        self.shards = Array(Set(shards)).sorted()
        rebuild()
    }

    /// Virtual nodes per shard (consistent hashing); 0 for ranges.
    public var virtualNodes: Int {
        if case .hashed(let v) = strategy { return v }
        return 0
    }

    /// Whether no shard is placed (every lookup then returns nil).
    public var isEmpty: Bool { shards.isEmpty }

    /// The shard that owns `key`.
    @inlinable
    public func owner(of key: NodeKey) -> ShardID? {
        guard let p = position(of: key) else { return nil }
        return shards[p]
    }

    /// The position in `shards` of the shard that owns `key` (nil when no shard is placed).
    public func position(of key: NodeKey) -> Int? {
        switch strategy {
        case .hashed: return position(ofHash: StableHash.hash(key.rawValue))
        case .ranges(let count): return rangePosition(key.rawValue % count, keyCount: count)
        }
    }

    /// The shard that owns the string key `key`.
    public func owner(of key: String) -> ShardID? { owner(ofHash: StableHash.hash(key)) }

    /// The shard that owns a key whose stable hash is `hash`.
    public func owner(ofHash hash: UInt64) -> ShardID? {
        let p: Int?
        switch strategy {
        case .hashed: p = position(ofHash: hash)
        case .ranges(let count): p = rangePosition(hash % count, keyCount: count)
        }
        return p.map { shards[$0] }
    }

    /// The keys of `0..<keyCount` that `shard` owns under a ranges placement (nil for hashed
    /// placements and shards not placed).
    public func range(of shard: ShardID) -> Range<UInt64>? {
        guard case .ranges(let count) = strategy, let p = shards.firstIndex(of: shard) else { return nil }
        return rangeStart(p, keyCount: count)..<rangeStart(p + 1, keyCount: count)
    }

    /// The placement with `shard` added (same strategy).
    public func adding(_ shard: ShardID) -> ShardPlacement {
        ShardPlacement(shards: shards + [shard], strategy: strategy)
    }

    /// The placement with `shard` removed (same strategy).
    public func removing(_ shard: ShardID) -> ShardPlacement {
        ShardPlacement(shards: shards.filter { $0 != shard }, strategy: strategy)
    }

    /// The same shards placed by another strategy.
    public func with(strategy: PlacementStrategy) -> ShardPlacement {
        ShardPlacement(shards: shards, strategy: strategy)
    }

    /// The same placement in storage of its own (no buffer shared with `self`): a shard's
    /// context keeps one, so the lanes running different shards never touch one reference
    /// count.
    func unshared() -> ShardPlacement {
        var copy = self
        copy.shards = shards.withUnsafeBufferPointer { Array($0) }
        copy.points = points.withUnsafeBufferPointer { Array($0) }
        copy.owners = owners.withUnsafeBufferPointer { Array($0) }
        return copy
    }

    private func position(ofHash hash: UInt64) -> Int? {
        guard !points.isEmpty else { return nil }
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid] < hash { lo = mid + 1 } else { hi = mid }
        }
        return Int(owners[lo == points.count ? 0 : lo])
    }

    /// Position `⌊k·n / keyCount⌋` of `k < keyCount` among `n` shards, without overflow.
    private func rangePosition(_ k: UInt64, keyCount: UInt64) -> Int? {
        let n = UInt64(shards.count)
        guard n > 0 else { return nil }
        let product = k.multipliedFullWidth(by: n)
        return Int(keyCount.dividingFullWidth(product).quotient)
    }

    /// The first key of position `p`: the smallest `k` with `⌊k·n / keyCount⌋ ≥ p`.
    private func rangeStart(_ p: Int, keyCount: UInt64) -> UInt64 {
        let n = UInt64(shards.count)
        // ⌈p·keyCount / n⌉
        let product = UInt64(p).multipliedFullWidth(by: keyCount)
        let (q, r) = n.dividingFullWidth(product)
        return r == 0 ? q : q + 1
    }

    private mutating func rebuild() {
        guard case .hashed(let virtualNodes) = strategy else { return }
        var ring: [(UInt64, Int32)] = []
        ring.reserveCapacity(shards.count * virtualNodes)
        for (p, s) in shards.enumerated() {
            for v in 0..<virtualNodes {
                ring.append((StableHash.hash("\(s)#\(v)"), Int32(p)))
            }
        }
        // Ties (astronomically unlikely) break by shard order so every process agrees.
        ring.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        points = ring.map(\.0)
        owners = ring.map(\.1)
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.strategy == b.strategy && a.shards == b.shards
    }
}
