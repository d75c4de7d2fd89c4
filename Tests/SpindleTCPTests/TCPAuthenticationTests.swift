import SpindleEventLoop
import SpindleKernel
import Testing
@testable import SpindleTCP

/// The authenticated handshake over real sockets.
@Suite("TCP authentication", .timeLimit(.minutes(1)))
struct TCPAuthenticationTests {
    static let key = ClusterKey.random()
    static let otherKey = ClusterKey.random()

    /// A server configured with `serverKey` whose rejections land in `failures` and logs in `logs`.
    static func serverConfiguration(_ serverKey: ClusterKey?, failures: Collector<CloseReason>,
                                    logs: Collector<String>) -> TCPTransport.Configuration {
        var c = capturingConfiguration(logs, key: serverKey)
        c.onHandshakeFailure = { _, reason in failures.append(reason) }
        return c
    }

    @Test("the right key on both sides is accepted and envelopes flow")
    func rightKey() async throws {
        let failures = Collector<CloseReason>(), logs = Collector<String>()
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: Self.serverConfiguration(Self.key, failures: failures, logs: logs))
            var clientConfig = TCPTransport.Configuration()
            clientConfig.clusterKey = Self.key
            let client = TCPTransport(loop: loop, configuration: clientConfig)
            let listener = try await listenEcho(server)
            let conn = try await client.connect(to: listener.address)
            let (received, _) = collect(conn)
            try conn.send(envelope(1))
            #expect(try await received.first("the authenticated echo") == envelope(1))
            #expect(failures.items.isEmpty)
            await client.shutdown()
            await server.shutdown()
        }
    }

    @Test("a wrong key is rejected: connect throws, the server reports and logs it")
    func wrongKey() async throws {
        try await rejected(clientKey: Self.otherKey, expectClient: "refused authentication",
                           expectServer: "does not authenticate under this side's cluster key")
    }

    @Test("a client without a key is rejected by a server that requires one")
    func missingClientKey() async throws {
        try await rejected(clientKey: nil, expectClient: "refused authentication",
                           expectServer: "offered none")
    }

    @Test("a client with a key refuses a server without one")
    func missingServerKey() async throws {
        let failures = Collector<CloseReason>(), logs = Collector<String>()
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: Self.serverConfiguration(nil, failures: failures, logs: logs))
            var clientConfig = TCPTransport.Configuration()
            clientConfig.clusterKey = Self.key
            let client = TCPTransport(loop: loop, configuration: clientConfig)
            let listener = try await listenEcho(server)
            await #expect(throws: TransportError.self) { try await client.connect(to: listener.address) }
            let reason = try await failures.first("the server-side failure")
            #expect(reason.isAuthenticationFailure(containing: "the peer requires a cluster key"), "\(reason)")
            await client.shutdown()
            await server.shutdown()
        }
    }

    /// Connects a client holding `clientKey` to a server holding `key` and checks both errors.
    func rejected(clientKey: ClusterKey?, expectClient: String, expectServer: String) async throws {
        let failures = Collector<CloseReason>(), logs = Collector<String>()
        try await withLoop { loop in
            let accepted = Collector<Bool>()
            let server = TCPTransport(loop: loop, configuration: Self.serverConfiguration(Self.key, failures: failures, logs: logs))
            var clientConfig = TCPTransport.Configuration()
            clientConfig.clusterKey = clientKey
            let client = TCPTransport(loop: loop, configuration: clientConfig)
            let listener = try await server.listen(on: .tcp(host: "127.0.0.1", port: 0)) { _ in accepted.append(true) }
            do throws(TransportError) {
                _ = try await client.connect(to: listener.address)
                Issue.record("connect succeeded with key \(String(describing: clientKey))")
            } catch {
                guard case .closed(let reason) = error else {
                    Issue.record("expected .closed(.authenticationFailed), got \(error)")
                    return
                }
                #expect(reason.isAuthenticationFailure(containing: expectClient), "\(reason)")
                #expect(reason.isAuthenticationFailure(containing: listener.address.description), "\(reason)")
            }
            let reason = try await failures.first("the server-side failure")
            #expect(reason.isAuthenticationFailure(containing: expectServer), "\(reason)")
            #expect(logs.items.contains { $0.contains("refused connection") && $0.contains("peer=") })
            #expect(server.refusals == ["127.0.0.1": 1])
            #expect(accepted.items.isEmpty)
            // The listener still serves a client with the right key.
            var goodConfig = TCPTransport.Configuration()
            goodConfig.clusterKey = Self.key
            let good = TCPTransport(loop: loop, configuration: goodConfig)
            _ = try await good.connect(to: listener.address)
            try await accepted.first("the good client to be accepted")
            await good.shutdown()
            await client.shutdown()
            await server.shutdown()
        }
    }

    @Test("a peer that never completes the handshake is disconnected after the timeout")
    func handshakeTimeout() async throws {
        let failures = Collector<CloseReason>(), logs = Collector<String>()
        var config = Self.serverConfiguration(Self.key, failures: failures, logs: logs)
        config.handshakeTimeout = .seconds(1)
        try await withTransport(config) { transport, loop in
            let listener = try await transport.listen(on: .tcp(host: "127.0.0.1", port: 0)) { _ in }
            let raw = try await RawPeer.connect(loop: loop, to: listener.address)
            // A keyed preamble and then silence: the server waits for the Noise message.
            raw.channel.write(TCPHandshake.preamble(role: .initiator, mode: .noise))
            let reason = try await failures.first("the handshake timeout")
            #expect(reason.isAuthenticationFailure(containing: "timed out after 1.0 seconds"), "\(reason)")
            #expect(reason.isAuthenticationFailure(containing: "handshake message"), "\(reason)")
            _ = try await raw.closed.first("the silent peer to be disconnected")
            // The server answers nothing before the peer has proven the key.
            #expect(raw.received.items.flatMap { $0 }.isEmpty)
        }
    }
}
