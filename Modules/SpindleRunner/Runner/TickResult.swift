import SpindleKernel

/// What one tick did: its number, each shard's phases, the cross-shard edges it created, the
/// collectives it combined.
public struct TickResult: Sendable {
    /// The tick's number (the first tick is 1).
    public var tick: UInt64
    /// One entry per shard that took part, in increasing shard order.
    public var shards: [ShardTickResult]
    /// The cross-shard edges created in Act, in delivery order: grouped by target shard, then
    /// by emitting shard, then in emission order (the batches shards received, not copied).
    public var crossShardEdges: CrossShardEdges
    /// Messages shards sent each other in Act.
    public var messageCount: Int
    /// Ghost-cache lookups of the tick's edges that hit and missed.
    public var ghostHits: Int
    public var ghostMisses: Int
    /// Wall time of the whole tick, as measured by the coordinator's clock.
    public var duration: Duration
    /// The coordinator's hybrid logical clock when the tick advanced.
    public var stamp: HLCTimestamp
    /// The tick's collective results (what shards see in the next tick's Sense).
    public var collectives: CollectiveResults

    /// The result of one shard.
    public func shard(_ id: ShardID) -> ShardTickResult? { shards.first { $0.shard == id } }

    /// The tick's result of `collective` (nil when no shard contributed).
    public func reduced<Value>(_ collective: Collective<Value>) -> Value? { collectives.value(of: collective) }
}

/// One shard's part of a tick.
public struct ShardTickResult: Sendable {
    public var shard: ShardID
    public var sense: PhaseResult?
    public var act: PhaseResult?
    public var decay: PhaseResult?

    public init(shard: ShardID, sense: PhaseResult?, act: PhaseResult?, decay: PhaseResult?) {
        self.shard = shard
        self.sense = sense
        self.act = act
        self.decay = decay
    }

    /// Sense, Act and Decay, in order.
    public var phases: [PhaseResult] { [sense, act, decay].compactMap { $0 } }

    public func phase(_ p: Phase) -> PhaseResult? {
        switch p {
        case .sense: return sense
        case .act: return act
        case .decay: return decay
        }
    }
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
