import SpindleKernel

/// What one tick did: its number, each shard's phases, the cross-shard edges it created.
public struct TickResult: Sendable {
    /// The tick's number (the first tick is 1).
    public var tick: UInt64
    /// One entry per shard that took part, in increasing shard order.
    public var shards: [ShardTickResult]
    /// The cross-shard edges created in Act, in delivery order.
    public var crossShardEdges: [CrossShardEdge]
    /// Messages shards sent each other in Act.
    public var messageCount: Int
    /// Ghost-cache lookups of the tick's edges that hit and missed.
    public var ghostHits: Int
    public var ghostMisses: Int
    /// Wall time of the whole tick, as measured by the coordinator's clock.
    public var duration: Duration
    /// The coordinator's hybrid logical clock when the tick advanced.
    public var stamp: HLCTimestamp

    /// The result of one shard.
    public func shard(_ id: ShardID) -> ShardTickResult? { shards.first { $0.shard == id } }
}

/// One shard's part of a tick.
public struct ShardTickResult: Sendable {
    public var shard: ShardID
    /// Sense, Act and Decay, in order.
    public var phases: [PhaseResult]

    public func phase(_ p: Phase) -> PhaseResult? { phases.first { $0.phase == p } }
}

/// One shard's run of one phase.
public struct PhaseResult: Sendable {
    public var phase: Phase
    /// How long the shard's phase code ran (measured where it ran).
    public var duration: Duration
    /// What the shard reported it processed.
    public var processed: Int
    /// Cross-shard edges and messages emitted (Act only).
    public var edgesEmitted: Int
    public var messagesEmitted: Int
    /// The hybrid logical clock stamp of the shard's barrier arrival.
    public var stamp: HLCTimestamp
}
