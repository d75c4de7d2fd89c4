import SpindleKernel
import Synchronization
import Testing
@testable import SpindleRunner

#if canImport(Glibc)
import Glibc
#endif

/// A shard that passes everything to another shard and calls test hooks around its Act.
final class HookedShard: Shard {
    let inner: any Shard
    let beforeAct: @Sendable (ShardContext) throws -> Void
    let afterAct: @Sendable (ShardContext) throws -> Void

    init(_ inner: any Shard, beforeAct: @escaping @Sendable (ShardContext) throws -> Void = { _ in },
         afterAct: @escaping @Sendable (ShardContext) throws -> Void = { _ in }) {
        self.inner = inner
        self.beforeAct = beforeAct
        self.afterAct = afterAct
    }

    var id: ShardID { inner.id }
    func sense(_ context: ShardContext) throws -> Int { try inner.sense(context) }
    func act(_ context: ShardContext, output: inout ActOutput) throws -> Int {
        try beforeAct(context)
        let n = try inner.act(context, output: &output)
        try afterAct(context)
        return n
    }
    func deliver(_ delivery: ShardDelivery, context: ShardContext) throws { try inner.deliver(delivery, context: context) }
    func decay(_ context: ShardContext) throws -> Int { try inner.decay(context) }
    func ghostNodes(for keys: [NodeKey], context: ShardContext) -> [GhostNode] { inner.ghostNodes(for: keys, context: context) }
    func stateDigest() -> UInt64 { inner.stateDigest() }
    var readsGhosts: Bool { inner.readsGhosts }
    func snapshot() throws -> [UInt8] { try inner.snapshot() }
    func restore(_ snapshot: [UInt8]) throws { try inner.restore(snapshot) }
}

/// An error a test shard throws on purpose.
struct Injected: Error, CustomStringConvertible {
    var what: String
    var description: String { what }
}

/// Fires once: the first `fire()` returns true.
final class Once: Sendable {
    private let done = Atomic<Bool>(false)
    func fire() -> Bool { !done.exchange(true, ordering: .acquiringAndReleasing) }
    var fired: Bool { done.load(ordering: .acquiring) }
}

/// Colony shards `1…count` placed by `placement` (registered with `coordinator`).
func colonyShards(_ count: Int, _ configuration: ColonyConfiguration, _ placement: PlacementStrategy,
                  coordinator: Coordinator) throws -> [ColonyShard] {
    try ColonyShard.makeShards(count: count, configuration: configuration, coordinator: coordinator, placement: placement)
}

/// The colony's digest after `ticks` ticks on one in-process shard: the reference every
/// partitioned, remote, restored or recovered run must reach.
func referenceDigest(_ configuration: ColonyConfiguration, ticks: Int) async throws -> UInt64 {
    try await runColony(shards: 1, ticks: ticks, configuration: configuration).digest
}

/// Runs `body` with a fresh directory under the system's temporary directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    var template = Array("/tmp/spindle-runner-test-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw Injected(what: "cannot create a temporary directory: \(String(cString: strerror(errno)))")
    }
    let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    do {
        let result = try await body(path)
        CheckpointStore.removeTree(path)
        return result
    } catch {
        CheckpointStore.removeTree(path)
        throw error
    }
}

/// Serves `shards` through shard hosts over `transport` to a fresh listener at `address`;
/// runs `body` with their remote handles (in id order); always shuts hosts and listener down.
func withShardHosts<T>(_ shards: [any Shard], transport: any Transport, address: Address,
                       coordinator: Coordinator,
                       _ body: (ShardServerListener, [RemoteShard]) async throws -> T) async throws -> T {
    let listener = try await ShardServerListener.listen(on: address, transport: transport, hlc: coordinator.hlc)
    var hosts: [ShardHost] = []
    do {
        for s in shards {
            hosts.append(try await ShardHost.serve(s, coordinator: listener.address, transport: transport))
        }
        let remotes = try await listener.waitForShards(count: shards.count, timeout: .seconds(30))
        let result = try await body(listener, remotes)
        listener.shutdown()
        for h in hosts { await h.shutdown() }
        return result
    } catch {
        listener.shutdown()
        for h in hosts { await h.shutdown() }
        throw error
    }
}

/// Waits (polling a condition the test cannot await otherwise) up to `seconds`.
func eventually(seconds: Double = 20, _ condition: () -> Bool) -> Bool {
    let clock = SystemClock()
    let deadline = clock.now() + .milliseconds(Int64(seconds * 1000))
    while !condition() {
        if clock.now() >= deadline { return false }
        sched_yield_shim()
    }
    return true
}
