import ActorFixtureActors
import SpindleActors
@_spi(SpindleTransportInternals) import SpindleKernel
import SpindleSupport
import Synchronization
import Testing

/// A transport that records the envelopes its connections send.
final class TappingTransport: Transport {
    let inner: any Transport
    let sent = Locked<[Envelope]>([])

    init(_ inner: any Transport) { self.inner = inner }

    func listen(on address: Address,
                accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        try await inner.listen(on: address, accept: accept)
    }

    func connect(to address: Address) async throws(TransportError) -> any TransportConnection {
        TappedConnection(try await inner.connect(to: address), sent: sent)
    }

    func shutdown() async {}
}

final class TappedConnection: TransportConnection {
    let inner: any TransportConnection
    let sent: Locked<[Envelope]>
    init(_ inner: any TransportConnection, sent: Locked<[Envelope]>) {
        self.inner = inner
        self.sent = sent
    }
    var localAddress: Address { inner.localAddress }
    var remoteAddress: Address { inner.remoteAddress }
    func send(_ envelope: Envelope) throws(TransportError) {
        sent.withLock { $0.append(envelope) }
        try inner.send(envelope)
    }
    func waitUntilWritable() async throws(TransportError) { try await inner.waitUntilWritable() }
    func start(_ handler: ConnectionHandler) { inner.start(handler) }
    func close() { inner.close() }
}

extension ActorSystemTests {
    @Test("hostile call envelopes (truncated, corrupted, bogus names) get typed refusals and never trap; the node keeps serving")
    func hostileCalls() async throws {
        let transport = InProcessTransport()
        var serverConfig = SpindleActorSystem.Configuration(listenAddress: .inproc(name: "hostile-\(UInt32.random(in: 0 ... .max))"))
        serverConfig.logger.logLevel = .critical
        serverConfig.link.core.livenessBound = .seconds(60)   // liveness is not under test
        let server = try await SpindleActorSystem(transport: transport, configuration: serverConfig)
        let tap = TappingTransport(transport)
        var clientConfig = SpindleActorSystem.Configuration()
        clientConfig.logger.logLevel = .critical
        clientConfig.link.core.livenessBound = .seconds(60)
        let client = try await SpindleActorSystem(transport: tap, configuration: clientConfig)
        let calculator = Calculator(actorSystem: server)
        let remote = try Calculator.resolve(id: calculator.id, using: client)
        #expect(try await remote.echo([1, 2, 3]) == [1, 2, 3])
        let genuine = try #require(tap.sent.value.last { $0.protocolTag == .actors && $0.kind == 3 })

        // A raw link of our own to the server, speaking the actor protocol badly.
        let replies = Locked<[Envelope]>([])
        let link = ReliableLink.connect(over: transport, to: try #require(server.address), handler: .init(
            onDeliver: { e in replies.withLock { $0.append(e) } }, onUndeliverable: { _, _ in }))
        let me = NodeID.generate()
        var variants: [[UInt8]] = (0..<genuine.payload.count).map { Array(genuine.payload[..<$0]) }
        var rng = SplitMix64(seed: 99)
        for _ in 0..<400 {
            var p = genuine.payload
            for _ in 0...(rng.next() % 3) { p[Int(rng.next() % UInt64(p.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            variants.append(p)
        }
        for _ in 0..<100 { variants.append((0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }) }
        // A generic substitution that is a symbolic reference (control byte + relative pointer).
        var symbolic = genuine.payload
        if let at = symbolic.firstIndex(of: 0x53) { symbolic.replaceSubrange(at...at, with: [0x01, 0x10, 0x20, 0x30, 0x40]) }
        variants.append(symbolic)
        for (i, p) in variants.enumerated() {
            try link.send(Envelope(protocolTag: .actors, kind: 3, source: me, destination: server.node,
                                   correlation: UInt64(i + 1), payload: p))
        }
        // Noise of other kinds: unknown kinds, replies and cancels for nothing.
        for k: UInt16 in [0, 4, 5, 77, 65535] {
            try link.send(Envelope(protocolTag: .actors, kind: k, source: me, correlation: 424242, payload: [1, 2, 3]))
        }
        try await waitUntil("a reply to every call") { replies.value.count >= variants.count }
        let byCall = Dictionary(grouping: replies.value, by: \.correlation)
        #expect(byCall.count == variants.count)
        #expect(byCall.values.allSatisfy { $0.count == 1 })
        // Truncated calls were refused, not run.
        let truncatedRefusals = (1...genuine.payload.count).filter { n in
            guard let r = byCall[UInt64(n)]?.first else { return false }
            return r.payload.first == 4   // a system error
        }
        #expect(truncatedRefusals.count == genuine.payload.count)
        // The node is still serving.
        #expect(try await remote.add(2, 2) == 4)
        await link.shutdown()
        await client.shutdown()
        await server.shutdown()
        await transport.shutdown()
        withExtendedLifetime(calculator) {}
    }
}
