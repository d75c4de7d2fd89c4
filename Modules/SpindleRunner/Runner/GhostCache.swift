import SpindleKernel
import Synchronization

/// A shard's cache of ghost nodes: read-only copies of remote nodes its edges reference,
/// bounded by least-recent use.
///
/// A value type: lookups that count as use go through `touch`; `peek` reads without changing
/// the order. Entries of a shard that leaves are dropped with `invalidate(owner:)`.
public struct GhostCache: Sendable {
    public let capacity: Int
    private var entries: [NodeKey: Entry] = [:]
    private var clock: UInt64 = 0
    public private(set) var hits: UInt64 = 0
    public private(set) var misses: UInt64 = 0

    private struct Entry: Sendable {
        var node: GhostNode
        var lastUse: UInt64
    }

    /// - Parameter capacity: how many ghosts the cache holds (at least 1).
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    public var count: Int { entries.count }

    /// The keys held, least recently used first.
    public var keysByRecency: [NodeKey] {
        entries.sorted { $0.value.lastUse < $1.value.lastUse }.map(\.key)
    }

    /// Looks `key` up as a use: a hit moves it to most recent; counts hits and misses.
    public mutating func touch(_ key: NodeKey) -> GhostNode? {
        clock &+= 1
        guard var e = entries[key] else {
            misses &+= 1
            return nil
        }
        hits &+= 1
        e.lastUse = clock
        entries[key] = e
        return e.node
    }

    /// Reads `key` without changing recency or counters.
    public func peek(_ key: NodeKey) -> GhostNode? { entries[key]?.node }

    /// Inserts (or replaces) a ghost as most recent.
    /// - Returns: the key evicted to make room, if any.
    @discardableResult
    public mutating func insert(_ node: GhostNode) -> NodeKey? {
        clock &+= 1
        var evicted: NodeKey? = nil
        if entries[node.key] == nil, entries.count >= capacity {
            // O(capacity) scan: eviction happens only on a miss, whose cost (a round to the
            // owning shard) dwarfs it.
            if let lru = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
                entries[lru] = nil
                evicted = lru
            }
        }
        entries[node.key] = Entry(node: node, lastUse: clock)
        return evicted
    }

    /// Drops every ghost owned by `owner` (it left the runner).
    /// - Returns: the keys dropped.
    @discardableResult
    public mutating func invalidate(owner: ShardID) -> [NodeKey] {
        let gone = entries.filter { $0.value.node.owner == owner }.map(\.key).sorted()
        for k in gone { entries[k] = nil }
        return gone
    }

    /// Drops one key.
    public mutating func remove(_ key: NodeKey) { entries[key] = nil }
}

/// A ghost cache shared between the runner's coordinator thread (which fills it between phases)
/// and its shard (which reads it during phases).
final class SharedGhostCache: Sendable {
    let cache: Mutex<GhostCache>

    init(capacity: Int) { cache = Mutex(GhostCache(capacity: capacity)) }

    func peek(_ key: NodeKey) -> GhostNode? { cache.withLock { $0.peek(key) } }
}
