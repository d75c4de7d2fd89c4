import SpindleKernel
import Testing
@testable import SpindleRunner

@Suite("Placement")
struct PlacementTests {
    let three = ShardPlacement(shards: [ShardID(1), ShardID(2), ShardID(3)])

    @Test("the stable hash has fixed values, in every process")
    func stableHashIsFixed() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; the murmur finaliser of that is fixed too.
        #expect(StableHash.mix(0xaf63_dc4c_8601_ec8c) == StableHash.hash("a"))
        #expect(StableHash.hash("spindle") == StableHash.hash(Array("spindle".utf8)))
        #expect(StableHash.hash("spindle") != StableHash.hash("spindlf"))
        #expect(StableHash.hash(UInt64(42)) == StableHash.hash([42, 0, 0, 0, 0, 0, 0, 0] as [UInt8]))
    }

    @Test("the same key goes to the same shard, however the placement was built")
    func stability() {
        let again = ShardPlacement(shards: [ShardID(3), ShardID(1), ShardID(2), ShardID(1)])
        #expect(again == three)
        for k in 0..<1000 as Range<UInt64> {
            let a = three.owner(of: NodeKey(k))
            #expect(a != nil)
            #expect(a == again.owner(of: NodeKey(k)))
            #expect(a == three.owner(of: NodeKey(k)))
        }
        #expect(three.owner(of: "user:17") == again.owner(of: "user:17"))
        #expect(ShardPlacement(shards: []).owner(of: NodeKey(1)) == nil)
    }

    @Test("100 keys over 3 shards: each gets 20 to 50")
    func spread() {
        var counts: [ShardID: Int] = [:]
        for k in 0..<100 as Range<UInt64> { counts[three.owner(of: NodeKey(k))!, default: 0] += 1 }
        #expect(counts.count == 3)
        for (shard, n) in counts { #expect((20...50).contains(n), "\(shard) got \(n) of 100 keys") }
        var strings: [ShardID: Int] = [:]
        for k in 0..<100 { strings[three.owner(of: "key-\(k)")!, default: 0] += 1 }
        for (shard, n) in strings { #expect((20...50).contains(n), "\(shard) got \(n) of 100 string keys") }
    }

    @Test("adding a shard moves about 1/n of the keys, all to the new shard")
    func minimalMovement() {
        let four = three.adding(ShardID(4))
        var moved = 0
        for k in 0..<1000 as Range<UInt64> {
            let before = three.owner(of: NodeKey(k))!
            let after = four.owner(of: NodeKey(k))!
            if before != after {
                moved += 1
                #expect(after == ShardID(4), "key \(k) moved from \(before) to \(after), not to the new shard")
            }
        }
        // The ideal is 250 of 1000; allow for the ring's variance.
        #expect((150...350).contains(moved), "\(moved) of 1000 keys moved")
        // Removing it again restores the old placement exactly.
        let back = four.removing(ShardID(4))
        for k in 0..<1000 as Range<UInt64> { #expect(back.owner(of: NodeKey(k)) == three.owner(of: NodeKey(k))) }
    }
}
