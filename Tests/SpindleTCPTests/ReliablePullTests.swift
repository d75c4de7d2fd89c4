import NetworkTestSupport
@_spi(SpindleTransportInternals) import SpindleKernel
import Synchronization
import Testing
@testable import SpindleTCP

/// A reliable link over SpindleTCP sends in pull mode: `send` only queues the frame in the
/// link, and the connection's loop takes everything queued once per turn
/// (`TransportConnection.requestWritePull`). These tests cut the connection under it.
@Suite("Reliable link over TCP, pulled writes", .timeLimit(.minutes(1)))
struct ReliablePullTests {
    @Test("a link whose TCP connection is cut three times mid-stream delivers 10 000 messages once each, in order")
    func cutsMidStream() async throws {
        try await withCuttableLink(highWatermark: 1_000) { link, cuttable, delivered, returned in
            for n in UInt64(1)...10_000 {
                try link.send(Envelope(protocolTag: .application, kind: 1, correlation: n, payload: [UInt8](repeating: 3, count: 40)))
                if n % 2_500 == 0 && n < 10_000 {
                    // Cut once this connection has carried something, with sends still queued.
                    _ = try await delivered.wait(count: Int(n) - 2_000, timeout: .seconds(20), "deliveries before cut \(n / 2_500)")
                    #expect(cuttable.cut(), "a connection to cut")
                }
                if n % 256 == 0 { try await link.waitUntilWritable() }
            }
            let got = try await delivered.wait(count: 10_000, timeout: .seconds(30), "delivered messages")
            #expect(got == Array(1...10_000))
            #expect(cuttable.connectionCount >= 4, "three cuts, three reconnects")
            #expect(cuttable.pullCount > 0, "sends went through pulls")
            #expect(link.statistics.reconnects >= 3)
            #expect(returned.items.isEmpty)
        }
    }

    @Test("a pull requested just before its connection closes is dropped without losing the queued messages")
    func pullOnAClosingConnection() async throws {
        try await withCuttableLink { link, cuttable, delivered, returned in
            try link.send(Envelope(protocolTag: .application, kind: 1, correlation: 1))
            _ = try await delivered.wait(count: 1, timeout: .seconds(10), "first delivery")
            // Each send asks for a pull and the cut follows at once: the pull may find its
            // connection closing (refused), closed (dropped) or replaced (ignored).
            for n in UInt64(2)...6 {
                try link.send(Envelope(protocolTag: .application, kind: 1, correlation: n))
                #expect(cuttable.cut())
            }
            let got = try await delivered.wait(count: 6, timeout: .seconds(20), "all deliveries")
            #expect(got == Array(1...6))
            #expect(returned.items.isEmpty)
        }
    }

    /// Runs `body` with a link whose connections the test can cut (reconnecting after 1 ms),
    /// the correlations its peer delivered, and those handed back as undeliverable; shuts
    /// both ends down afterwards.
    private func withCuttableLink(highWatermark: Int = 65_536,
                                  _ body: (ReliableLink, CuttableTransport, Collector<UInt64>, Collector<UInt64>) async throws -> Void) async throws {
        try await withTransport { transport, _ in
            let delivered = Collector<UInt64>()
            let listener = try await ReliableListener.listen(over: transport, on: .tcp(host: "127.0.0.1", port: 0)) { _ in
                ReliableLink.Handler(onDeliver: { delivered.append($0.correlation) }, onUndeliverable: { _, _ in })
            }
            let cuttable = CuttableTransport(transport)
            var config = ReliableLink.Configuration(writableHighWatermark: highWatermark, writableLowWatermark: highWatermark / 2)
            config.core.initialBackoff = .milliseconds(1)
            let returned = Collector<UInt64>()
            let link = ReliableLink.connect(over: cuttable, to: listener.address, configuration: config,
                                            handler: .init(onDeliver: { _ in },
                                                           onUndeliverable: { es, _ in for e in es { returned.append(e.correlation) } }))
            do {
                try await body(link, cuttable, delivered, returned)
            } catch {
                await link.shutdown()
                await listener.shutdown()
                throw error
            }
            await link.shutdown()
            await listener.shutdown()
        }
    }
}

/// Wraps a transport's connections so a test can cut the newest one and count pulls; every
/// other call goes through unchanged (including `supportsWritePulls`).
private final class CuttableTransport: Transport {
    private let inner: any Transport
    private struct State {
        var connections: [CuttableConnection] = []
    }
    private let state = Mutex(State())
    private let pulls = PullCounter()

    init(_ inner: any Transport) { self.inner = inner }

    var connectionCount: Int { state.withLock { $0.connections.count } }
    var pullCount: Int { pulls.count.load(ordering: .relaxed) }

    /// Closes the newest connection; false when there is none.
    func cut() -> Bool {
        guard let c = state.withLock({ $0.connections.last }) else { return false }
        c.inner.close()
        return true
    }

    func listen(on address: Address,
                accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        try await inner.listen(on: address, accept: accept)
    }

    func connect(to address: Address) async throws(TransportError) -> any TransportConnection {
        let c = CuttableConnection(try await inner.connect(to: address), pulls: pulls)
        state.withLock { $0.connections.append(c) }
        return c
    }

    func shutdown() async { await inner.shutdown() }
}

private final class CuttableConnection: TransportConnection {
    let inner: any TransportConnection
    private let pulls: PullCounter

    init(_ inner: any TransportConnection, pulls: PullCounter) {
        self.inner = inner
        self.pulls = pulls
    }

    var localAddress: Address { inner.localAddress }
    var remoteAddress: Address { inner.remoteAddress }
    func send(_ envelope: Envelope) throws(TransportError) { try inner.send(envelope) }
    func send(contentsOf envelopes: [Envelope]) throws(TransportError) { try inner.send(contentsOf: envelopes) }
    func send(encodedFrames frames: UnsafeRawBufferPointer) throws(TransportError) { try inner.send(encodedFrames: frames) }
    var maximumFrameSize: Int { inner.maximumFrameSize }
    var deliversDuringSend: Bool { inner.deliversDuringSend }
    var supportsWritePulls: Bool { inner.supportsWritePulls }
    func requestWritePull(_ pull: @escaping @Sendable () -> Void) -> Bool {
        pulls.count.add(1, ordering: .relaxed)
        return inner.requestWritePull(pull)
    }
    func waitUntilWritable() async throws(TransportError) { try await inner.waitUntilWritable() }
    var isWritable: Bool { inner.isWritable }
    func start(_ handler: ConnectionHandler) { inner.start(handler) }
    func close() { inner.close() }
}

private final class PullCounter: Sendable {
    let count = Atomic<Int>(0)
}
