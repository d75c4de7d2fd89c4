import SpindleKernel

/// A shard whose phases do nothing: measures the runner's own cost per tick, and stands in for
/// a shard in tests of the coordination itself.
public final class IdleShard: Shard {
    public let id: ShardID

    public init(id: ShardID) { self.id = id }

    /// Stands in where a slot needs some shard (remote members); never run.
    static let placeholder = IdleShard(id: ShardID(0))

    public func sense(_ context: ShardContext) throws -> Int { 0 }
    public func act(_ context: ShardContext, output: inout ActOutput) throws -> Int { 0 }
    public func decay(_ context: ShardContext) throws -> Int { 0 }

    /// An idle shard has no state: its snapshot is empty.
    public func snapshot() throws -> [UInt8] { [] }

    public func snapshot(into buffer: inout [UInt8]) throws {
        if !buffer.isEmpty { buffer.removeAll(keepingCapacity: true) }
    }

    public func restore(_ snapshot: [UInt8]) throws {
        guard snapshot.isEmpty else {
            throw RunnerError.snapshotFailed(shard: id, operation: "restore",
                                             reason: "an idle shard's snapshot is empty; got \(snapshot.count) bytes")
        }
    }
}
