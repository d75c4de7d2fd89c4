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
    public var edges: CrossShardEdges
    public var messages: [ShardMessage]

    public init(edges: CrossShardEdges = [], messages: [ShardMessage] = []) {
        self.edges = edges
        self.messages = messages
    }

    public init(edges: [CrossShardEdge], messages: [ShardMessage] = []) {
        self.init(edges: CrossShardEdges(edges), messages: messages)
    }

    public var isEmpty: Bool { edges.isEmpty && messages.isEmpty }
}

/// A sequence of cross-shard edges kept as the batches they travelled in (one per emitting
/// shard and target shard): the runner hands the same buffers to the target shard and to the
/// tick's result without copying an edge.
public struct CrossShardEdges: RandomAccessCollection, Sendable, Equatable, ExpressibleByArrayLiteral,
    CustomStringConvertible
{
    /// Non-empty batches, in order.
    private var batches: [[CrossShardEdge]] = []
    /// `starts[i]`: the index of `batches[i]`'s first edge.
    private var starts: [Int] = []
    private var total = 0

    public init() {}

    public init(_ edges: [CrossShardEdge]) {
        append(batch: edges)
    }

    public init(arrayLiteral elements: CrossShardEdge...) {
        self.init(elements)
    }

    /// Appends a batch (shared, not copied).
    mutating func append(batch: [CrossShardEdge]) {
        guard !batch.isEmpty else { return }
        batches.append(batch)
        starts.append(total)
        total += batch.count
    }

    /// Appends every batch of `other`.
    mutating func append(contentsOf other: CrossShardEdges) {
        for b in other.batches { append(batch: b) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { total }
    public var count: Int { total }
    public var isEmpty: Bool { total == 0 }

    public subscript(position: Int) -> CrossShardEdge {
        precondition(position >= 0 && position < endIndex, "CrossShardEdges index \(position) out of range 0..<\(endIndex)")
        // The last batch whose start is at or before `position`.
        var lo = 0, hi = batches.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= position { lo = mid } else { hi = mid - 1 }
        }
        return batches[lo][position - starts[lo]]
    }

    public func makeIterator() -> Iterator { Iterator(batches: batches) }

    /// Walks the batches in order, holding the current batch (no per-edge index arithmetic
    /// or reference counting).
    public struct Iterator: IteratorProtocol {
        private let batches: [[CrossShardEdge]]
        private var batch = 0
        private var current: [CrossShardEdge]
        private var offset = 0

        init(batches: [[CrossShardEdge]]) {
            self.batches = batches
            current = batches.first ?? []
        }

        public mutating func next() -> CrossShardEdge? {
            if offset < current.count {
                defer { offset += 1 }
                return current[offset]
            }
            while batch + 1 < batches.count {
                batch += 1
                current = batches[batch]
                if !current.isEmpty {
                    offset = 1
                    return current[0]
                }
            }
            return nil
        }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.count == b.count && a.elementsEqual(b)
    }

    public var description: String { Array(self).description }
}
