import SpindleKernel

/// An edge from a node of one shard to a node of another, created in Act.
///
/// The emitting shard names the two nodes and a weight; the runner fills in both shards from
/// the placement and delivers the edge to the target's shard before the next Sense.
public struct CrossShardEdge: Hashable, Sendable, CustomStringConvertible {
    public var source: NodeKey
    public var target: NodeKey
    /// The shard that emitted the edge (owner of `source`).
    public var sourceShard: ShardID
    /// The shard that owns `target` (where the edge is delivered).
    public var targetShard: ShardID
    /// Application-defined strength of the edge.
    public var weight: Int64

    public init(source: NodeKey, target: NodeKey, sourceShard: ShardID, targetShard: ShardID,
                weight: Int64) {
        self.source = source
        self.target = target
        self.sourceShard = sourceShard
        self.targetShard = targetShard
        self.weight = weight
    }

    public var description: String {
        "\(source)@\(sourceShard) -> \(target)@\(targetShard) (weight \(weight))"
    }
}

/// Opaque bytes one shard sends another in Act, delivered before the next Sense.
public struct ShardMessage: Hashable, Sendable {
    public var from: ShardID
    public var to: ShardID
    public var payload: [UInt8]

    public init(from: ShardID, to: ShardID, payload: [UInt8]) {
        self.from = from
        self.to = to
        self.payload = payload
    }
}

/// What a shard emits in Act: cross-shard edges and messages.
public struct ActOutput: Sendable {
    /// Edges as emitted: `sourceShard` and `targetShard` are filled in by the runner.
    public internal(set) var edges: [PendingEdge] = []
    public internal(set) var messages: [(to: ShardID, payload: [UInt8])] = []

    public init() {}

    /// Emits an edge from `source` (a node of this shard) to `target` (a node of any shard; the
    /// runner finds its owner by placement).
    public mutating func emitEdge(from source: NodeKey, to target: NodeKey, weight: Int64 = 1) {
        edges.append(PendingEdge(source: source, target: target, weight: weight))
    }

    /// Sends `payload` to shard `to`, delivered before the next Sense.
    public mutating func send(_ payload: [UInt8], to: ShardID) {
        messages.append((to, payload))
    }

    /// An edge as emitted, before the runner resolves its shards.
    public struct PendingEdge: Hashable, Sendable {
        public var source: NodeKey
        public var target: NodeKey
        public var weight: Int64
    }
}

/// What a shard receives before its Decay: the edges and messages of the tick's Act that target
/// it, ordered by emitting shard and then emission order.
public struct ShardDelivery: Sendable {
    public var edges: [CrossShardEdge]
    public var messages: [ShardMessage]

    public init(edges: [CrossShardEdge] = [], messages: [ShardMessage] = []) {
        self.edges = edges
        self.messages = messages
    }

    public var isEmpty: Bool { edges.isEmpty && messages.isEmpty }
}
