import NetworkTestSupport
import SpindleKernel
import Testing
@testable import SpindleTCP

/// A reliable link over SpindleTCP: batched reads (`ConnectionHandler(onEnvelopes:onEnvelopeViews:)`), acks
/// coalesced per read, and `send(contentsOf:)`.
@Suite("Reliable link over TCP", .timeLimit(.minutes(1)))
struct ReliableOverTCPTests {
    @Test("20 000 messages, single and batched sends, arrive once each and in order")
    func inOrderExactlyOnce() async throws {
        try await withTransport { transport, _ in
            let delivered = Collector<UInt64>()
            let listener = try await ReliableListener.listen(over: transport, on: .tcp(host: "127.0.0.1", port: 0)) { _ in
                ReliableLink.Handler(onDeliver: { delivered.append($0.correlation) }, onUndeliverable: { _, _ in })
            }
            let link = ReliableLink.connect(over: transport, to: listener.address,
                                            handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
            var next: UInt64 = 1
            while next <= 20_000 {
                if next % 3 == 0 {
                    let batch = (next..<min(next + 500, 20_001)).map { Envelope(protocolTag: .application, kind: 1, correlation: $0, payload: [7]) }
                    try link.send(contentsOf: batch)
                    next += UInt64(batch.count)
                } else {
                    try link.send(Envelope(protocolTag: .application, kind: 1, correlation: next, payload: [7]))
                    next += 1
                }
            }
            let got = try await delivered.wait(count: 20_000, timeout: .seconds(30), "delivered messages")
            #expect(got == Array(1...20_000))
            // Acks (at most one per read) drain the sender's queue.
            let clock = SystemClock()
            let deadline = clock.now() + .seconds(10)
            while link.queuedCount > 0 && clock.now() < deadline { await Task.yield() }
            #expect(link.queuedCount == 0)
            #expect(link.statistics.duplicatesDropped == 0 && link.statistics.retransmitted == 0)
            await link.shutdown()
            await listener.shutdown()
        }
    }

    @Test("once connected, a message above the connection's frame limit is refused by send, naming that limit")
    func sendRefusesAboveTheConnectionsLimit() async throws {
        var config = TCPTransport.Configuration()
        config.maxFrameSize = 4096       // the link's own limit stays at 16 MiB
        try await withTransport(config) { transport, _ in
            let listener = try await ReliableListener.listen(over: transport, on: .tcp(host: "127.0.0.1", port: 0)) { _ in
                ReliableLink.Handler(onDeliver: { _ in }, onUndeliverable: { _, _ in })
            }
            let link = ReliableLink.connect(over: transport, to: listener.address,
                                            handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
            let system = SystemClock()
            let deadline = system.now() + .seconds(10)
            while !link.isEstablished && system.now() < deadline { try await Task.sleep(for: .milliseconds(2)) }
            #expect(link.isEstablished)
            let big = Envelope(protocolTag: .application, kind: 1, payload: [UInt8](repeating: 2, count: 10_000))
            let size = FrameEncoder.frameSize(of: big) + 8     // the sequence the link adds
            #expect(throws: ReliableLinkError.tooLarge(size: size, limit: 4096)) { try link.send(big) }
            #expect(throws: ReliableLinkError.tooLarge(size: size, limit: 4096)) { try link.send(contentsOf: [big]) }
            #expect(link.queuedCount == 0)
            await link.shutdown()
            await listener.shutdown()
        }
    }

    @Test("messages queued before the first connection, which then refuses one, come back timed out naming the refusal")
    func refusedTransmissionIsReported() async throws {
        var config = TCPTransport.Configuration()
        config.maxFrameSize = 4096
        try await withTransport(config) { transport, _ in
            // A Unix socket path nobody listens on yet (unlike a TCP port, no test running in
            // parallel can take it before this one listens there).
            let address = Address.unix(path: temporarySocketPath())
            let returned = Collector<([Envelope], UndeliverableReason)>()
            // The sending link runs on a manual clock, ticked by the test: reconnects and the
            // delivery timeout happen exactly when the test says, however loaded the machine is.
            let clock = ManualClock()
            // (Its connect timeout and liveness bound are beyond the test's clock jumps: this is about the delivery timeout.)
            let linkConfig = ReliableLink.Configuration(core: .init(deliveryTimeout: .seconds(30), connectTimeout: .seconds(600),
                                                                    livenessBound: .seconds(600)),
                                                        clock: clock, automaticTicks: false)
            let link = ReliableLink.connect(over: transport, to: address, configuration: linkConfig,
                                            handler: .init(onDeliver: { _ in }, onUndeliverable: { returned.append(($0, $1)) }))
            let system = SystemClock()
            func waitFor(_ what: String, _ condition: () -> Bool) async throws {
                let deadline = system.now() + .seconds(10)
                while !condition() && system.now() < deadline { try await Task.sleep(for: .milliseconds(2)) }
                if !condition() { Issue.record("timed out waiting for \(what)") }
            }
            // Nothing listens yet: the first connect fails, and the link's limit is its own.
            try await waitFor("the first connect to fail") { link.statistics.lastError != nil }
            try link.send(Envelope(protocolTag: .application, kind: 1, correlation: 1, payload: [1]))
            try link.send(Envelope(protocolTag: .application, kind: 1, correlation: 2,
                                   payload: [UInt8](repeating: 2, count: 10_000)))
            let delivered = Collector<Envelope>()
            let listener = try await ReliableListener.listen(over: transport, on: address) { _ in
                ReliableLink.Handler(onDeliver: { delivered.append($0) }, onUndeliverable: { _, _ in })
            }
            // Reconnect: the handshake retransmits both, the connection refuses the batch.
            clock.advance(by: .seconds(5))
            link.tick()
            try await waitFor("the refusal") { link.statistics.lastError?.contains("refused a transmission") == true }
            clock.advance(by: .seconds(30))
            link.tick()
            let (messages, reason) = try await returned.first(timeout: .seconds(10), "the queued messages back")
            #expect(messages.map(\.correlation) == [1, 2])
            guard case .timedOut(_, let lastError?) = reason else {
                Issue.record("expected a timeout naming the last error, got \(reason)")
                return
            }
            #expect(lastError.contains("refused a transmission") && lastError.contains("exceeds the limit of 4096"), "\(lastError)")
            #expect(delivered.items.isEmpty)
            // The link reconnects on a later tick and carries on with messages that fit.
            try link.send(Envelope(protocolTag: .application, kind: 1, correlation: 3, payload: [3]))
            clock.advance(by: .seconds(5))
            link.tick()
            let got = try await delivered.first(timeout: .seconds(10), "the message after the refused ones")
            #expect(got.correlation == 3)
            await link.shutdown()
            await listener.shutdown()
        }
    }
}
