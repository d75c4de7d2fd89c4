import Logging
import SpindleKernel

/// What a shard sees while running a phase: the tick, the placement, its ghost nodes, the last
/// tick's collective results; where it contributes to this tick's collectives.
public struct ShardContext: Sendable {
    /// The tick being run (the first tick is 1).
    public var tick: UInt64
    public var phase: Phase
    /// The shard the context belongs to.
    public var shard: ShardID
    /// Where every node lives: `placement.owner(of:)`.
    public var placement: ShardPlacement
    public var logger: Logger
    let ghostView: GhostView?
    /// The previous tick's collective results.
    public internal(set) var collectives: CollectiveResults
    let sink: ContributionSink?

    public init(tick: UInt64, phase: Phase, shard: ShardID, placement: ShardPlacement,
                logger: Logger = Logger(label: "spindle.runner"), ghosts: [NodeKey: GhostNode] = [:],
                collectives: CollectiveResults = CollectiveResults()) {
        self.tick = tick
        self.phase = phase
        self.shard = shard
        self.placement = placement
        self.logger = logger
        self.ghostView = ghosts.isEmpty ? nil : .fixed(ghosts)
        self.collectives = collectives
        self.sink = nil
    }

    init(tick: UInt64, phase: Phase, shard: ShardID, placement: ShardPlacement, logger: Logger,
         ghostView: GhostView?, collectives: CollectiveResults, sink: ContributionSink?) {
        self.tick = tick
        self.phase = phase
        self.shard = shard
        self.placement = placement
        self.logger = logger
        self.ghostView = ghostView
        self.collectives = collectives
        self.sink = sink
    }

    /// The cached read-only copy of a remote node, if this shard's ghost cache holds one.
    /// Reading does not change the cache's recency order.
    public func ghost(_ key: NodeKey) -> GhostNode? {
        switch ghostView {
        case .none: return nil
        case .fixed(let d): return d[key]
        case .cache(let c): return c.peek(key)
        }
    }

    /// The result of `collective` from the previous tick: every shard's contributions combined
    /// in shard-id order. Nil in the first tick, and when no shard contributed last tick.
    public func reduced<Value>(_ collective: Collective<Value>) -> Value? {
        collectives.value(of: collective)
    }

    /// Contributes `value` to this tick's `collective` (any phase; several contributions of
    /// one shard fold in order). A context the runner did not make ignores contributions.
    public func contribute<Value>(_ value: Value, to collective: Collective<Value>) {
        sink?.add(value, to: collective)
    }

    enum GhostView: Sendable {
        case fixed([NodeKey: GhostNode])
        case cache(SharedGhostCache)
    }
}
