import SpindleKernel

/// A partition of a simulation that the distributed runner advances tick by tick.
///
/// The runner calls one method of a shard at a time (never two concurrently) and in this order
/// every tick: ``deliver(_:context:)`` (the edges and messages other shards emitted in Act),
/// ``sense(_:)``, ``act(_:output:)``, ``decay(_:)`` — with ``ghostNodes(for:context:)`` after
/// decay when other shards referenced this shard's nodes. Different shards run in parallel.
///
/// Conforming types are classes; since the runner never overlaps calls on one shard, state
/// behind a `Mutex` is uncontended.
///
/// A shard that implements ``snapshot()`` and ``restore(_:)`` can be checkpointed, rolled back
/// when a tick fails, and respawned from a checkpoint when its process dies.
public protocol Shard: AnyObject, Sendable {
    /// The shard's identity; unique among the runner's shards.
    var id: ShardID { get }

    /// Sense: reads the shard's state (and ghost nodes) and decides; must not change what other
    /// phases or shards can observe.
    /// - Returns: how many items (agents, nodes) the phase processed.
    func sense(_ context: ShardContext) throws -> Int

    /// Act: applies the decisions of Sense; may append cross-shard edges and messages to
    /// `output`. Throwing fails the tick with this shard's id.
    /// - Returns: how many items the phase processed.
    func act(_ context: ShardContext, output: inout ActOutput) throws -> Int

    /// Receives what other shards emitted for this shard in the tick's Act (runs right before
    /// ``decay(_:)`` of the same tick, so before the next Sense). Order is deterministic: by
    /// emitting shard, then emission order.
    func deliver(_ delivery: ShardDelivery, context: ShardContext) throws

    /// Decay: ages the shard's state (signals, traces, edges).
    /// - Returns: how many items the phase processed.
    func decay(_ context: ShardContext) throws -> Int

    /// Read-only copies of this shard's nodes `keys` for other shards' ghost caches. Keys this
    /// shard does not own are left out.
    func ghostNodes(for keys: [NodeKey], context: ShardContext) -> [GhostNode]

    /// Whether the shard reads ghost nodes (`ShardContext.ghost(_:)`). The runner fetches ghosts
    /// of the nodes a shard's edges reach only for shards that do; the default is true.
    var readsGhosts: Bool { get }

    /// A digest of the shard's state for comparing runs. Digests of all shards are combined by
    /// wrapping addition (`StateDigest.combine`), so the digest of a partitioned state must not
    /// depend on the partitioning.
    func stateDigest() -> UInt64

    /// The shard's whole state at a tick boundary, as bytes that ``restore(_:)`` reads back
    /// (in this process or another). Called between ticks (checkpoints) and right before a
    /// tick's Sense (the in-memory rollback point), never during a phase.
    /// - Throws: `RunnerError.snapshotUnsupported` (the default) when the shard cannot.
    func snapshot() throws -> [UInt8]

    /// Writes the same snapshot into `buffer`, reusing its storage: the runner keeps one
    /// rollback buffer per shard and passes it back every tick, so a shard that implements
    /// this saves an allocation (and the page faults of fresh memory) per tick. The default
    /// calls ``snapshot()``.
    func snapshot(into buffer: inout [UInt8]) throws

    /// Replaces the shard's state with a snapshot's, as it was at that tick boundary; also drops
    /// whatever a failed tick left half-done.
    /// - Throws: when the bytes are not a snapshot of this shard (name what is wrong); the
    ///   default throws `RunnerError.snapshotUnsupported`.
    func restore(_ snapshot: [UInt8]) throws
}

extension Shard {
    public func deliver(_ delivery: ShardDelivery, context: ShardContext) throws {}
    public func ghostNodes(for keys: [NodeKey], context: ShardContext) -> [GhostNode] { [] }
    public var readsGhosts: Bool { true }
    public func stateDigest() -> UInt64 { 0 }
    public func snapshot() throws -> [UInt8] { throw RunnerError.snapshotUnsupported(shard: id) }
    public func snapshot(into buffer: inout [UInt8]) throws { buffer = try snapshot() }
    public func restore(_ snapshot: [UInt8]) throws { throw RunnerError.snapshotUnsupported(shard: id) }
}

/// Combines per-shard digests into one, independent of the order and of the partitioning.
public enum StateDigest {
    /// The wrapping sum of `digests`.
    public static func combine(_ digests: some Sequence<UInt64>) -> UInt64 {
        digests.reduce(0, &+)
    }

    /// The digest of one record (a node, an agent): feed every record of the state through this
    /// and add the results, and any partition of the records gives the same total.
    public static func record(_ words: UInt64...) -> UInt64 {
        var h = StableHash.fnv1aOffset
        for w in words { h = StableHash.fnv1a(word: w, into: h) }
        return StableHash.mix(h)
    }

    /// `record` of four words, without the variadic array (hot loops).
    @inline(__always)
    static func record(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> UInt64 {
        var h = StableHash.fnv1a(word: a, into: StableHash.fnv1aOffset)
        h = StableHash.fnv1a(word: b, into: h)
        h = StableHash.fnv1a(word: c, into: h)
        h = StableHash.fnv1a(word: d, into: h)
        return StableHash.mix(h)
    }
}
