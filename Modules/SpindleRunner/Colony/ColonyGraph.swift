/// The colony's graph: a ring of nodes plus seeded random chords; undirected, identical in every
/// shard and process (built from the seed with the stable hash, never from `Hasher`).
struct ColonyGraph: Sendable {
    /// `neighbours[v]`: the nodes adjacent to `v`, increasing, without duplicates or `v`.
    let neighbours: [[Int]]

    init(_ c: ColonyConfiguration) {
        let n = c.nodeCount
        var adj = [Set<Int>](repeating: [], count: n)
        for v in 0..<n {
            adj[v].insert((v + 1) % n)
            adj[(v + 1) % n].insert(v)
            for k in 0..<c.chordsPerNode {
                let u = Int(ColonyRandom.value(c.seed, 0xC0D, UInt64(v), UInt64(k)) % UInt64(n))
                if u != v {
                    adj[v].insert(u)
                    adj[u].insert(v)
                }
            }
        }
        neighbours = adj.map { $0.sorted() }
    }
}

/// Counter-based random numbers: the value for (seed, stream…) is a pure function of its
/// inputs, so each agent's choice at each tick is the same however the agents are partitioned.
enum ColonyRandom {
    static func value(_ words: UInt64...) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15
        for w in words { h = StableHash.mix(h ^ StableHash.mix(w &+ 0x9E37_79B9_7F4A_7C15)) }
        return h
    }
}
