/// The colony's graph: a ring of nodes plus seeded random chords; undirected, identical in every
/// shard and process (built from the seed with the stable hash, never from `Hasher`). Kept in
/// compressed rows: the neighbours of `v` are `neighbours[offsets[v] ..< offsets[v + 1]]`,
/// increasing, without duplicates or `v`.
struct ColonyGraph: Sendable {
    let nodeCount: Int
    let offsets: [Int32]
    let neighbours: [Int32]

    init(_ c: ColonyConfiguration) {
        let n = c.nodeCount
        // Every undirected edge, both ways (duplicates removed below).
        var degree = [Int32](repeating: 0, count: n + 1)
        var pairs: [(Int32, Int32)] = []
        pairs.reserveCapacity(n * (1 + c.chordsPerNode))
        for v in 0..<n {
            pairs.append((Int32(v), Int32((v + 1) % n)))
            for k in 0..<c.chordsPerNode {
                let u = Int(ColonyRandom.value(c.seed, 0xC0D, UInt64(v), UInt64(k)) % UInt64(n))
                if u != v { pairs.append((Int32(v), Int32(u))) }
            }
        }
        for (a, b) in pairs where a != b {
            degree[Int(a)] += 1
            degree[Int(b)] += 1
        }
        var start = [Int32](repeating: 0, count: n + 1)
        for v in 0..<n { start[v + 1] = start[v] + degree[v] }
        var fill = start
        var raw = [Int32](repeating: 0, count: Int(start[n]))
        for (a, b) in pairs where a != b {
            raw[Int(fill[Int(a)])] = b
            fill[Int(a)] += 1
            raw[Int(fill[Int(b)])] = a
            fill[Int(b)] += 1
        }
        var offsets = [Int32](repeating: 0, count: n + 1)
        var out: [Int32] = []
        out.reserveCapacity(raw.count)
        for v in 0..<n {
            var segment = Array(raw[Int(start[v])..<Int(start[v + 1])])
            segment.sort()
            var last: Int32 = -1
            for u in segment where u != last && u != Int32(v) {
                out.append(u)
                last = u
            }
            offsets[v + 1] = Int32(out.count)
        }
        nodeCount = n
        self.offsets = offsets
        neighbours = out
    }
}

/// Counter-based random numbers: the value for (seed, stream…) is a pure function of its
/// inputs, so each agent's choice at each tick is the same however the agents are partitioned.
enum ColonyRandom {
    @inline(__always)
    static func step(_ h: UInt64, _ w: UInt64) -> UInt64 {
        StableHash.mix(h ^ StableHash.mix(w &+ 0x9E37_79B9_7F4A_7C15))
    }

    static let origin: UInt64 = 0x9E37_79B9_7F4A_7C15

    @inline(__always)
    static func value(_ a: UInt64, _ b: UInt64) -> UInt64 { step(step(origin, a), b) }

    @inline(__always)
    static func value(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 { step(step(step(origin, a), b), c) }

    @inline(__always)
    static func value(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> UInt64 {
        step(step(step(step(origin, a), b), c), d)
    }
}

/// Who owns which node under one placement, shared by every shard of a colony: each node's
/// owner (a position in `placement.shards`) and its index among its owner's nodes.
struct ColonyPartition: Sendable {
    let configuration: ColonyConfiguration
    let graph: ColonyGraph
    let placement: ShardPlacement
    /// `ownerPosition[v]`: the position in `placement.shards` of the shard owning `v`.
    let ownerPosition: [Int32]
    /// `indexInOwner[v]`: where `v` sits among its owner's nodes (increasing node order).
    let indexInOwner: [Int32]
    /// The nodes of the shard at each position, increasing.
    let owned: [[Int32]]
    /// The halo plan: `haloIn[p][q]` lists, for the cross-shard edges from the shard at
    /// position q to the shard at position p, the target's index among p's nodes — in q's
    /// (node, neighbour) order, which is also the order q writes its amounts.
    let haloIn: [[[Int32]]]

    init(configuration: ColonyConfiguration, placement: ShardPlacement) {
        self.init(configuration: configuration, graph: ColonyGraph(configuration), placement: placement)
    }

    init(configuration: ColonyConfiguration, graph: ColonyGraph, placement: ShardPlacement) {
        self.configuration = configuration
        self.graph = graph
        self.placement = placement
        let n = configuration.nodeCount
        var ownerPosition = [Int32](repeating: 0, count: n)
        var indexInOwner = [Int32](repeating: 0, count: n)
        var owned = [[Int32]](repeating: [], count: max(1, placement.shards.count))
        for v in 0..<n {
            let p = placement.position(of: NodeKey(UInt64(v))) ?? 0
            ownerPosition[v] = Int32(p)
            indexInOwner[v] = Int32(owned[p].count)
            owned[p].append(Int32(v))
        }
        self.ownerPosition = ownerPosition
        self.indexInOwner = indexInOwner
        self.owned = owned
        let shards = owned.count
        var haloIn = [[[Int32]]](repeating: [[Int32]](repeating: [], count: shards), count: shards)
        for q in 0..<shards {
            for v in owned[q] {
                for j in Int(graph.offsets[Int(v)])..<Int(graph.offsets[Int(v) + 1]) {
                    let u = Int(graph.neighbours[j])
                    let p = Int(ownerPosition[u])
                    if p != q { haloIn[p][q].append(indexInOwner[u]) }
                }
            }
        }
        self.haloIn = haloIn
    }
}
