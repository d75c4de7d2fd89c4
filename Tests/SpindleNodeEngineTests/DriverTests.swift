import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleNodeEngine

/// Collects finished executions from a driver's outcomes and lets a test wait for them.
final class Finished: Sendable {
    private let state = Mutex<(done: [FinishedExecution], waiters: [CheckedContinuation<Void, Never>])>(([], []))

    func add(_ outcome: PollOutcome) {
        guard !outcome.finished.isEmpty else { return }
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.done.append(contentsOf: outcome.finished)
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    var all: [FinishedExecution] { state.withLock { $0.done } }

    /// Waits until `predicate` holds, failing after `seconds`.
    func wait(seconds: Double = 60, _ predicate: @escaping @Sendable ([FinishedExecution]) -> Bool) async throws {
        let deadline = SystemClock().now() + .milliseconds(Int64(seconds * 1000))
        while !predicate(all) {
            guard SystemClock().now() < deadline else {
                Issue.record("timed out after \(seconds) s waiting for executions; have \(all.count)")
                throw CancellationError()
            }
            // Woken by the next finished execution, or re-checked after a short timer so the
            // timeout is honoured.
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                state.withLock { $0.waiters.append(c) }
                Task {
                    try? await Task.sleep(for: .milliseconds(50))
                    let w = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                        defer { s.waiters.removeAll() }
                        return s.waiters
                    }
                    for x in w { x.resume() }
                }
            }
        }
    }
}

@Suite("Node driver on an event loop")
struct DriverTests {
    @Test func twoDrivenNodesExchangeRequestsOverTheInProcessTransport() async throws {
        let loop = try EventLoop(name: "node-driver-test")
        let transport = InProcessTransport()
        let serverID = NodeID.generate(), clientID = NodeID.generate()

        // A minute before a silent peer counts as down: a loaded machine running the whole
        // suite can stall the loops for seconds, and this test is not about liveness.
        var patient = NodeConfiguration()
        patient.livenessBound = .seconds(60)
        patient.suspicion.acceptablePause = .seconds(60)
        let server = Node(id: serverID, configuration: patient)
        try server.install(EchoComponent(), at: "echo")
        try server.install(MathComponent(), at: "math")
        try server.install(meshProgram(peers: []))
        // The links between the drivers get the same patience (their connects, liveness and
        // deliveries run on the shared task pool, which the whole suite keeps busy).
        var patientLink = ReliableLink.Configuration()
        patientLink.core.connectTimeout = .seconds(60)
        patientLink.core.livenessBound = .seconds(60)
        var serverConfig = NodeDriver.Configuration(listenAddress: .inproc(name: "server"))
        serverConfig.link = patientLink
        let serverDriver = try await NodeDriver.start(node: server, on: loop, transport: transport,
                                                      configuration: serverConfig)

        let client = Node(id: clientID, configuration: patient)
        try client.install(EchoComponent(), at: "echo")
        try client.install(MathComponent(), at: "math")
        try client.install(meshProgram(peers: ["server"], timeoutMs: 60_000))
        client.addPeer(serverID, name: "server", addresses: [.inproc(name: "server")])
        let finished = Finished()
        var config = NodeDriver.Configuration()
        config.link = patientLink
        config.onOutcome = { finished.add($0) }
        let clientDriver = try await NodeDriver.start(node: client, on: loop, transport: transport, configuration: config)

        for i in 1...20 { try clientDriver.start(site: "in", value: .int(Int64(i))) }
        try clientDriver.start(site: "ask-server", value: .int(50))
        try await finished.wait { $0.count >= 21 }
        let echoed = Set(finished.all.compactMap { $0.result("got-server")?.intValue })
        #expect(echoed == Set(1...20))
        #expect(finished.all.contains { $0.result("asked-server") == .int(100) })
        #expect(finished.all.allSatisfy { $0.failures == 0 })

        let samples = try await clientDriver.withNode { node in
            node.context.net.rtt.estimate(for: RttTarget(peer: serverID, endpoint: "op echo"))?.samples ?? 0
        }
        #expect(samples == 20)

        await clientDriver.shutdown()
        await serverDriver.shutdown()
        await transport.shutdown()
        await loop.shutdown()
    }

    @Test func anAsyncCompletionFromAnotherThreadWakesTheLoop() async throws {
        let loop = try EventLoop(name: "node-driver-wake")
        let transport = InProcessTransport()
        var b = ProgramBuilder("later")
        b.site("in"); b.site("out")
        b.op("later", .component(slot: "math", op: "later"), inputs: ["x": "in"], outputs: ["y": "out"])
        let node = Node()
        try node.install(MathComponent(), at: "math")
        try node.install(b.program)
        let finished = Finished()
        var config = NodeDriver.Configuration()
        config.onOutcome = { finished.add($0) }
        let driver = try await NodeDriver.start(node: node, on: loop, transport: transport, configuration: config)
        try driver.start(site: "in", value: .int(1))
        // Wait until the op is parked, then complete it from this (non-loop) thread.
        var handle: CompletionHandle?
        for _ in 0..<2000 where handle == nil {
            handle = try await driver.withNode { node in
                try node.context.siblings.component(at: "math", as: MathComponent.self).handles.first
            }
            if handle == nil { try await Task.sleep(for: .milliseconds(5)) }
        }
        let h = try #require(handle)
        try h.complete(.int(99))
        try await finished.wait { $0.contains { $0.result("out") == .int(99) } }
        await driver.shutdown()
        await transport.shutdown()
        await loop.shutdown()
    }
}
