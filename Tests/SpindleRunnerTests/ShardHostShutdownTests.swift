import SpindleKernel
import Synchronization
import Testing
@testable import SpindleRunner

/// A shard whose state digest waits until the test releases it: a request its host is running.
final class SlowDigestShard: Shard {
    let id = ShardID(1)
    let entered = Atomic<Bool>(false)
    let release = Atomic<Bool>(false)
    static let digest: UInt64 = 0xD16E57

    func sense(_ context: ShardContext) throws -> Int { 0 }
    func act(_ context: ShardContext, output: inout ActOutput) throws -> Int { 0 }
    func decay(_ context: ShardContext) throws -> Int { 0 }

    func stateDigest() -> UInt64 {
        entered.store(true, ordering: .releasing)
        let clock = SystemClock()
        let deadline = clock.now() + .seconds(30)
        while !release.load(ordering: .acquiring) && clock.now() < deadline { sched_yield_shim() }
        return Self.digest
    }
}

@Suite("Shard host shutdown", .timeLimit(.minutes(1)))
struct ShardHostShutdownTests {
    @Test("shutdown lets the request running finish and send its reply, then closes; nothing is served after")
    func graceful() async throws {
        let transport = InProcessTransport()
        let coordinator = Coordinator()
        let listener = try await ShardServerListener.listen(on: .inproc(name: "coord-graceful-shutdown"),
                                                            transport: transport, hlc: coordinator.hlc)
        let shard = SlowDigestShard()
        let host = try await ShardHost.serve(shard, coordinator: listener.address, transport: transport)
        let remote = try #require(try await listener.waitForShards(count: 1, timeout: .seconds(20)).first)
        let digest = Task { try await remote.stateDigest(stamp: coordinator.hlc.tick(), timeout: .seconds(30)) }

        let clock = SystemClock()
        let deadline = clock.now() + .seconds(20)
        while !shard.entered.load(ordering: .acquiring) && clock.now() < deadline { await Task.yield() }
        let entered = shard.entered.load(ordering: .acquiring)
        #expect(entered, "the digest request did not start")

        let shutdown = Task { await host.shutdown() }
        // Serving has ended (no new request starts) while the digest is still running.
        #expect(await host.waitUntilDone() == .disconnected("shut down locally"))
        shard.release.store(true, ordering: .releasing)
        #expect(try await digest.value == SlowDigestShard.digest,
                "the reply of the request in flight went out before the connection closed")
        await shutdown.value
        await host.shutdown()  // idempotent
        await #expect(throws: RunnerError.self) {
            _ = try await remote.stateDigest(stamp: coordinator.hlc.tick(), timeout: .seconds(5))
        }
        listener.shutdown()
        await transport.shutdown()
    }
}
