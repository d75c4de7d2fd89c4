import SpindleKernel

/// A read-only copy of a node owned by another shard, kept in a shard's ghost cache.
public struct GhostNode: Hashable, Sendable, CustomStringConvertible {
    public var key: NodeKey
    /// The shard that owns the node and exported this copy.
    public var owner: ShardID
    /// The tick whose end state the copy reflects.
    public var tick: UInt64
    /// The owner's description of the node (application-defined bytes).
    public var payload: [UInt8]

    public init(key: NodeKey, owner: ShardID, tick: UInt64, payload: [UInt8]) {
        self.key = key
        self.owner = owner
        self.tick = tick
        self.payload = payload
    }

    public var description: String { "ghost \(key) of \(owner) at tick \(tick)" }
}
