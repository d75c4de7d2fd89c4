import SpindleKernel
import SpindleSupport
import Testing
@testable import SpindleRunner

@Suite("Ghost cache")
struct GhostCacheTests {
    func ghost(_ k: UInt64, owner: UInt64) -> GhostNode {
        GhostNode(key: NodeKey(k), owner: ShardID(owner), tick: 1, payload: [UInt8(k)])
    }

    @Test("evicts the least recently used; touch refreshes, peek does not")
    func lru() {
        var cache = GhostCache(capacity: 3)
        #expect(cache.insert(ghost(1, owner: 1)) == nil)
        #expect(cache.insert(ghost(2, owner: 1)) == nil)
        #expect(cache.insert(ghost(3, owner: 2)) == nil)
        #expect(cache.touch(NodeKey(1))?.payload == [1])   // 1 is now the most recent
        #expect(cache.peek(NodeKey(2)) != nil)              // peeking keeps 2 the least recent
        #expect(cache.insert(ghost(4, owner: 2)) == NodeKey(2))
        #expect(cache.keysByRecency == [NodeKey(3), NodeKey(1), NodeKey(4)])
        #expect(cache.touch(NodeKey(2)) == nil)
        #expect(cache.hits == 1 && cache.misses == 1)
        // Replacing an entry evicts nothing.
        #expect(cache.insert(ghost(3, owner: 2)) == nil)
        #expect(cache.count == 3)
    }

    @Test("a leaving shard's ghosts are invalidated, others stay")
    func invalidation() {
        var cache = GhostCache(capacity: 10)
        for k in 1...4 as ClosedRange<UInt64> { cache.insert(ghost(k, owner: k % 2 + 1)) }
        #expect(cache.invalidate(owner: ShardID(1)) == [NodeKey(2), NodeKey(4)])
        #expect(cache.peek(NodeKey(2)) == nil && cache.peek(NodeKey(4)) == nil)
        #expect(cache.peek(NodeKey(1)) != nil && cache.peek(NodeKey(3)) != nil)
        #expect(cache.invalidate(owner: ShardID(1)).isEmpty)
    }

    @Test("the cache's key table agrees with a dictionary under random inserts, lookups and removals")
    func keyTable() {
        var table = KeyTable(minimumCapacity: 2)
        var reference: [UInt64: Int32] = [:]
        var rng = SplitMix64(seed: 11)
        for step in 0..<20_000 {
            let key = rng.next() % 300          // few keys: long probe runs and many removals
            switch rng.next() % 3 {
            case 0:
                let value = Int32(step)
                table.set(key, value)
                reference[key] = value
            case 1:
                #expect(table.remove(key) == reference.removeValue(forKey: key))
            default:
                #expect(table.find(key) == reference[key])
            }
            #expect(table.count == reference.count)
        }
        for (k, v) in reference { #expect(table.find(k) == v) }
        table.removeAll()
        #expect(table.count == 0 && table.find(reference.keys.first ?? 0) == nil)
    }
}
