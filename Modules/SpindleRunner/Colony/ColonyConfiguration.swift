/// The parameters of the bundled colony model; with the same values every run, in every
/// partitioning, gives the same final state.
public struct ColonyConfiguration: Sendable, Equatable {
    /// Seeds the graph, the initial state and every agent's random choices.
    public var seed: UInt64
    /// Nodes of the graph (a ring with random chords). At least 3.
    public var nodeCount: Int
    /// Agents walking the graph.
    public var agentCount: Int
    /// Random chords added per node, beside its two ring neighbours.
    public var chordsPerNode: Int
    /// Signal an agent deposits on its node each tick (fixed point, 16 fraction bits).
    public var deposit: Int64
    /// Share of a node's signal that flows to each neighbour per tick, in 1/1024ths.
    public var diffusionPer1024: Int64
    /// Share of a node's signal (and trail) lost per tick, in 1/1024ths.
    public var decayPer1024: Int64

    public init(seed: UInt64, nodeCount: Int = 512, agentCount: Int = 128, chordsPerNode: Int = 1,
                deposit: Int64 = 1 << 16, diffusionPer1024: Int64 = 40, decayPer1024: Int64 = 24) {
        self.seed = seed
        self.nodeCount = max(3, nodeCount)
        self.agentCount = max(0, agentCount)
        self.chordsPerNode = max(0, chordsPerNode)
        self.deposit = deposit
        self.diffusionPer1024 = diffusionPer1024
        self.decayPer1024 = decayPer1024
    }

    /// Contiguous arcs of the ring, one per shard: the placement that keeps neighbouring nodes
    /// on one shard (`PlacementStrategy.ranges` over the node count).
    public var localityPlacement: PlacementStrategy { .ranges(keyCount: UInt64(nodeCount)) }
}
