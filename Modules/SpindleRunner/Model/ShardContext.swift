import Logging
import SpindleKernel

/// What a shard sees while running a phase: the tick, the placement, its ghost nodes.
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

    public init(tick: UInt64, phase: Phase, shard: ShardID, placement: ShardPlacement,
                logger: Logger = Logger(label: "spindle.runner"), ghosts: [NodeKey: GhostNode] = [:]) {
        self.tick = tick
        self.phase = phase
        self.shard = shard
        self.placement = placement
        self.logger = logger
        self.ghostView = ghosts.isEmpty ? nil : .fixed(ghosts)
    }

    init(tick: UInt64, phase: Phase, shard: ShardID, placement: ShardPlacement, logger: Logger,
         ghostView: GhostView?) {
        self.tick = tick
        self.phase = phase
        self.shard = shard
        self.placement = placement
        self.logger = logger
        self.ghostView = ghostView
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

    enum GhostView: Sendable {
        case fixed([NodeKey: GhostNode])
        case cache(SharedGhostCache)
    }
}
