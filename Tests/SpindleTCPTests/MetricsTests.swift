import MetricsTestKit
import NetworkTestSupport
import SpindleEventLoop
import SpindleKernel
import Testing
@testable import SpindleTCP

/// What the transport and reliable links publish through swift-metrics (docs/operations.md).
@Suite("Transport and link metrics", .timeLimit(.minutes(1)))
struct MetricsTests {
    @Test("an encrypted connection counts once per side, is open while connected, and a wrong key counts a refusal")
    func tcpCounters() async throws {
        let metrics = TestMetrics()
        let key = ClusterKey.random()
        var config = TCPTransport.Configuration()
        config.clusterKey = key
        config.metricsFactory = metrics
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: config)
            let client = TCPTransport(loop: loop, configuration: config)
            let listener = try await listenEcho(server)
            let conn = try await client.connect(to: listener.address)
            let (received, _) = collect(conn)
            let sent = Envelope(protocolTag: .application, kind: 3, payload: [1, 2, 3])
            try conn.send(sent)
            #expect(try await received.first("the echo") == sent)
            let initiated = try metrics.expectCounter("spindle_tcp_connections_total", [("role", "initiator"), ("mode", "encrypted")])
            let accepted = try metrics.expectCounter("spindle_tcp_connections_total", [("role", "acceptor"), ("mode", "encrypted")])
            #expect(initiated.totalValue == 1 && accepted.totalValue == 1)
            #expect(try metrics.expectMeter("spindle_tcp_connections_open").lastValue == 2)
            #expect(try metrics.expectCounter("spindle_tcp_bytes_received_total").totalValue > 0)

            var wrong = TCPTransport.Configuration()
            wrong.clusterKey = .random()
            let stranger = TCPTransport(loop: loop, configuration: wrong)
            await #expect(throws: TransportError.self) { _ = try await stranger.connect(to: listener.address) }
            #expect(try metrics.expectCounter("spindle_tcp_handshake_refusals_total").totalValue == 1)

            conn.close()
            let open = try metrics.expectMeter("spindle_tcp_connections_open")
            let clock = SystemClock()
            let deadline = clock.now() + .seconds(20)
            while open.lastValue != 0 && clock.now() < deadline { try await Task.sleep(for: .milliseconds(5)) }
            #expect(open.lastValue == 0, "closed connections still counted open")
            await stranger.shutdown()
            await client.shutdown()
            await server.shutdown()
        }
    }

    @Test("a link that connects counts a connect on each side; messages handed back count by reason")
    func linkCounters() async throws {
        let metrics = TestMetrics()
        try await withTransport { transport, _ in
            var linkConfig = ReliableLink.Configuration()
            linkConfig.metricsFactory = metrics
            let listener = try await ReliableListener.listen(over: transport, on: .tcp(host: "127.0.0.1", port: 0),
                                                             configuration: linkConfig) { _ in
                ReliableLink.Handler(onDeliver: { _ in }, onUndeliverable: { _, _ in })
            }
            let returned = Collector<UndeliverableReason>()
            let link = ReliableLink.connect(over: transport, to: listener.address, configuration: linkConfig,
                                            handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
            let clock = SystemClock()
            let deadline = clock.now() + .seconds(20)
            while !link.isEstablished && clock.now() < deadline { try await Task.sleep(for: .milliseconds(2)) }
            #expect(link.isEstablished)
            #expect(try metrics.expectCounter("spindle_link_connects_total", [("role", "initiator")]).totalValue == 1)
            let acceptorConnects = try metrics.expectCounter("spindle_link_connects_total", [("role", "acceptor")])
            while acceptorConnects.totalValue < 1 && clock.now() < deadline { try await Task.sleep(for: .milliseconds(2)) }
            #expect(acceptorConnects.totalValue == 1)

            // A link to where nobody listens: aborting it hands its message back, counted as link_closed.
            let nowhere = ReliableLink.connect(over: transport, to: .unix(path: temporarySocketPath()), configuration: linkConfig,
                                               handler: .init(onDeliver: { _ in }, onUndeliverable: { es, why in
                                                   for _ in es { returned.append(why) }
                                               }))
            try nowhere.send(Envelope(protocolTag: .application, kind: 1, payload: [9]))
            nowhere.abort()
            #expect(try await returned.first("the aborted link's message") == .linkClosed)
            #expect(try metrics.expectCounter("spindle_link_undeliverable_total",
                                              [("role", "initiator"), ("reason", "link_closed")]).totalValue == 1)
            await listener.shutdown()
            await link.shutdown()
        }
    }
}
