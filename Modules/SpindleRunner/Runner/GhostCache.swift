import SpindleKernel
import Synchronization

/// A shard's cache of ghost nodes: read-only copies of remote nodes its edges reference,
/// bounded by least-recent use.
///
/// A value type with O(1) lookups, inserts and evictions (an open-addressing table into an
/// index-linked recency list). Lookups that count as use go through `touch`; `peek` reads without changing
/// the order. Entries of a shard that leaves are dropped with `invalidate(owner:)`.
public struct GhostCache: Sendable {
    public let capacity: Int
    private var index: KeyTable
    private var slots: [Slot] = []
    private var free: [Int] = []
    /// Least and most recently used slots (-1 when empty).
    private var lru = -1
    private var mru = -1
    public private(set) var hits: UInt64 = 0
    public private(set) var misses: UInt64 = 0
    /// Counts changes of contents or recency (a copy with the same count is the same cache).
    private(set) var mutations: UInt64 = 0

    private struct Slot: Sendable {
        var node: GhostNode
        var older: Int
        var newer: Int
    }

    /// - Parameter capacity: how many ghosts the cache holds (at least 1).
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        index = KeyTable(minimumCapacity: min(self.capacity, 1 << 16))
    }

    public var count: Int { index.count }

    /// The keys held, least recently used first.
    public var keysByRecency: [NodeKey] {
        var out: [NodeKey] = []
        var i = lru
        while i >= 0 {
            out.append(slots[i].node.key)
            i = slots[i].newer
        }
        return out
    }

    /// The nodes held, least recently used first (inserting them in this order into an empty
    /// cache rebuilds this one).
    public var nodesByRecency: [GhostNode] {
        var out: [GhostNode] = []
        out.reserveCapacity(index.count)
        var i = lru
        while i >= 0 {
            out.append(slots[i].node)
            i = slots[i].newer
        }
        return out
    }

    /// Looks `key` up as a use: a hit moves it to most recent; counts hits and misses.
    public mutating func touch(_ key: NodeKey) -> GhostNode? {
        guard let found = index.find(key.rawValue) else {
            misses &+= 1
            return nil
        }
        hits &+= 1
        let i = Int(found)
        if i != mru {
            unlink(i)
            linkNewest(i)
            mutations &+= 1
        }
        return slots[i].node
    }

    /// Reads `key` without changing recency or counters.
    public func peek(_ key: NodeKey) -> GhostNode? { index.find(key.rawValue).map { slots[Int($0)].node } }

    /// Inserts (or replaces) a ghost as most recent.
    /// - Returns: the key evicted to make room, if any.
    @discardableResult
    public mutating func insert(_ node: GhostNode) -> NodeKey? {
        mutations &+= 1
        if let found = index.find(node.key.rawValue) {
            let i = Int(found)
            slots[i].node = node
            unlink(i)
            linkNewest(i)
            return nil
        }
        var evicted: NodeKey? = nil
        if index.count >= capacity, lru >= 0 {
            let victim = lru
            evicted = slots[victim].node.key
            drop(victim)
        }
        let slot = Slot(node: node, older: -1, newer: -1)
        let i: Int
        if let f = free.popLast() {
            slots[f] = slot
            i = f
        } else {
            slots.append(slot)
            i = slots.count - 1
        }
        index.set(node.key.rawValue, Int32(i))
        linkNewest(i)
        return evicted
    }

    /// Drops every ghost owned by `owner` (it left the runner).
    /// - Returns: the keys dropped, in increasing order.
    @discardableResult
    public mutating func invalidate(owner: ShardID) -> [NodeKey] {
        var gone: [(NodeKey, Int)] = []
        var i = lru
        while i >= 0 {
            if slots[i].node.owner == owner { gone.append((slots[i].node.key, i)) }
            i = slots[i].newer
        }
        for (_, i) in gone { drop(i) }
        return gone.map(\.0).sorted()
    }

    /// Drops one key.
    public mutating func remove(_ key: NodeKey) {
        if let i = index.find(key.rawValue) { drop(Int(i)) }
    }

    private mutating func drop(_ i: Int) {
        mutations &+= 1
        unlink(i)
        index.remove(slots[i].node.key.rawValue)
        slots[i].node.payload = []
        free.append(i)
    }

    private mutating func unlink(_ i: Int) {
        let (o, n) = (slots[i].older, slots[i].newer)
        if o >= 0 { slots[o].newer = n } else { lru = n }
        if n >= 0 { slots[n].older = o } else { mru = o }
        slots[i].older = -1
        slots[i].newer = -1
    }

    private mutating func linkNewest(_ i: Int) {
        slots[i].older = mru
        slots[i].newer = -1
        if mru >= 0 { slots[mru].newer = i } else { lru = i }
        mru = i
    }
}

/// A shard's ghost cache as the runner keeps it: read by the shard during phases, updated by
/// whoever runs the shard's routing and installs (never at the same time).
final class SharedGhostCache: Sendable {
    let cache: Mutex<GhostCache>
    let capacity: Int

    init(capacity: Int) {
        cache = Mutex(GhostCache(capacity: capacity))
        self.capacity = max(1, capacity)
    }

    func peek(_ key: NodeKey) -> GhostNode? { cache.withLock { $0.peek(key) } }
}
