import Logging
import SpindleKernel

/// What a shard sees while running a phase: the tick, the placement, its ghost nodes, the last
/// tick's collective results; where it contributes to this tick's collectives.
///
/// A context is small to pass: the tick and phase are stored inline, everything else sits in
/// one shared box (replaced, not mutated, when a setter changes it).
public struct ShardContext: Sendable {
    /// The tick being run (the first tick is 1).
    public var tick: UInt64
    public var phase: Phase
    private var box: Box

    /// The parts of a context that change rarely.
    final class Box: Sendable {
        let shard: ShardID
        let placement: ShardPlacement
        let logger: Logger
        let ghostView: GhostView?
        let collectives: CollectiveResults
        let sink: ContributionSink?

        init(shard: ShardID, placement: ShardPlacement, logger: Logger, ghostView: GhostView?,
             collectives: CollectiveResults, sink: ContributionSink?) {
            self.shard = shard
            self.placement = placement
            self.logger = logger
            self.ghostView = ghostView
            self.collectives = collectives
            self.sink = sink
        }

        func with(shard: ShardID? = nil, placement: ShardPlacement? = nil, logger: Logger? = nil,
                  collectives: CollectiveResults? = nil) -> Box {
            Box(shard: shard ?? self.shard, placement: placement ?? self.placement, logger: logger ?? self.logger,
                ghostView: ghostView, collectives: collectives ?? self.collectives, sink: sink)
        }
    }

    /// The shard the context belongs to.
    public var shard: ShardID {
        get { box.shard }
        set { box = box.with(shard: newValue) }
    }

    /// Where every node lives: `placement.owner(of:)`.
    public var placement: ShardPlacement {
        get { box.placement }
        set { box = box.with(placement: newValue) }
    }

    public var logger: Logger {
        get { box.logger }
        set { box = box.with(logger: newValue) }
    }

    /// The previous tick's collective results.
    public internal(set) var collectives: CollectiveResults {
        get { box.collectives }
        set { box = box.with(collectives: newValue) }
    }

    var ghostView: GhostView? { box.ghostView }
    var sink: ContributionSink? { box.sink }

    public init(tick: UInt64, phase: Phase, shard: ShardID, placement: ShardPlacement,
                logger: Logger = Logger(label: "spindle.runner"), ghosts: [NodeKey: GhostNode] = [:],
                collectives: CollectiveResults = CollectiveResults()) {
        self.tick = tick
        self.phase = phase
        box = Box(shard: shard, placement: placement, logger: logger, ghostView: ghosts.isEmpty ? nil : .fixed(ghosts),
                  collectives: collectives, sink: nil)
    }

    init(tick: UInt64, phase: Phase, shard: ShardID, placement: ShardPlacement, logger: Logger,
         ghostView: GhostView?, collectives: CollectiveResults, sink: ContributionSink?) {
        self.tick = tick
        self.phase = phase
        box = Box(shard: shard, placement: placement, logger: logger, ghostView: ghostView,
                  collectives: collectives, sink: sink)
    }

    /// The cached read-only copy of a remote node, if this shard's ghost cache holds one.
    /// Reading does not change the cache's recency order.
    public func ghost(_ key: NodeKey) -> GhostNode? {
        switch box.ghostView {
        case .none: return nil
        case .fixed(let d): return d[key]
        case .cache(let c): return c.peek(key)
        }
    }

    /// The result of `collective` from the previous tick: every shard's contributions combined
    /// in shard-id order. Nil in the first tick, and when no shard contributed last tick.
    public func reduced<Value>(_ collective: Collective<Value>) -> Value? {
        box.collectives.value(of: collective)
    }

    /// Contributes `value` to this tick's `collective` (any phase; several contributions of
    /// one shard fold in order). A context the runner did not make ignores contributions.
    public func contribute<Value>(_ value: Value, to collective: Collective<Value>) {
        box.sink?.add(value, to: collective)
    }

    enum GhostView: Sendable {
        case fixed([NodeKey: GhostNode])
        case cache(SharedGhostCache)
    }
}
