import SpindleKernel
import Synchronization
@testable import SpindleRunner

/// A shard whose phases run test-supplied closures and that records what happened to it.
final class TestShard: Shard {
    let id: ShardID
    struct Log: Sendable {
        var events: [String] = []
        var deliveries: [(tick: UInt64, delivery: ShardDelivery)] = []
        var ghostsSeen: [(tick: UInt64, key: NodeKey, ghost: GhostNode?)] = []
    }
    let log = Mutex(Log())
    let onSense: @Sendable (ShardContext) throws -> Void
    let onAct: @Sendable (ShardContext, inout ActOutput) throws -> Void
    let onDecay: @Sendable (ShardContext) throws -> Void
    let ghostPayload: @Sendable (NodeKey) -> [UInt8]?

    init(_ id: UInt64,
         onSense: @escaping @Sendable (ShardContext) throws -> Void = { _ in },
         onAct: @escaping @Sendable (ShardContext, inout ActOutput) throws -> Void = { _, _ in },
         onDecay: @escaping @Sendable (ShardContext) throws -> Void = { _ in },
         ghostPayload: @escaping @Sendable (NodeKey) -> [UInt8]? = { k in [UInt8(truncatingIfNeeded: k.rawValue)] }) {
        self.id = ShardID(id)
        self.onSense = onSense
        self.onAct = onAct
        self.onDecay = onDecay
        self.ghostPayload = ghostPayload
    }

    var events: [String] { log.withLock { $0.events } }

    func sense(_ context: ShardContext) throws -> Int {
        log.withLock { $0.events.append("sense \(context.tick)") }
        try onSense(context)
        return 1
    }

    func act(_ context: ShardContext, output: inout ActOutput) throws -> Int {
        log.withLock { $0.events.append("act \(context.tick)") }
        try onAct(context, &output)
        return 1
    }

    func deliver(_ delivery: ShardDelivery, context: ShardContext) throws {
        log.withLock {
            $0.events.append("deliver \(context.tick) edges=\(delivery.edges.count) messages=\(delivery.messages.count)")
            $0.deliveries.append((context.tick, delivery))
        }
    }

    func decay(_ context: ShardContext) throws -> Int {
        log.withLock { $0.events.append("decay \(context.tick)") }
        try onDecay(context)
        return 1
    }

    func ghostNodes(for keys: [NodeKey], context: ShardContext) -> [GhostNode] {
        keys.compactMap { k in ghostPayload(k).map { GhostNode(key: k, owner: id, tick: context.tick, payload: $0) } }
    }
}

/// A gate a test opens once; waiters give up after a timeout (so a broken test fails, not hangs).
final class TestLatch: Sendable {
    private let open = Atomic<Bool>(false)

    func release() { open.store(true, ordering: .releasing) }

    /// Waits up to `seconds` for `release()`; returns whether it was released.
    @discardableResult
    func wait(seconds: Double) -> Bool {
        let clock = SystemClock()
        let deadline = clock.now() + .milliseconds(Int64(seconds * 1000))
        while !open.load(ordering: .acquiring) {
            if clock.now() >= deadline { return false }
            sched_yield_shim()
        }
        return true
    }
}

#if canImport(Glibc)
import Glibc
func sched_yield_shim() { usleep(200) }
#endif

/// Node keys that `placement` puts on `shard`.
func keys(ownedBy shard: ShardID, in placement: ShardPlacement, count: Int, from start: UInt64 = 0) -> [NodeKey] {
    var out: [NodeKey] = []
    var k = start
    while out.count < count {
        if placement.owner(of: NodeKey(k)) == shard { out.append(NodeKey(k)) }
        k += 1
    }
    return out
}
