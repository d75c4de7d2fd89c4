import Testing
import SpindleKernel
import SpindleSupport

/// What a reliable link hands its application.
private final class LinkInbox: Sendable {
    let delivered = Locked<[Envelope]>([])
    let undeliverable = Locked<[([Envelope], UndeliverableReason)]>([])
    var handler: ReliableLink.Handler {
        ReliableLink.Handler(
            onDeliver: { e in self.delivered.withLock { $0.append(e) } },
            onUndeliverable: { es, why in self.undeliverable.withLock { $0.append((es, why)) } })
    }
}

@Suite struct ReliableLinkTests {
    private let fast = ReliableLink.Configuration(
        core: .init(initialBackoff: .milliseconds(2), maximumBackoff: .milliseconds(50)),
        tickInterval: .milliseconds(2))

    @Test func tenThousandExactlyOnceInOrderAcrossThreeDisconnects() async throws {
        let t = InProcessTransport()
        let serverInbox = LinkInbox()
        let listener = try await ReliableListener.listen(over: t, on: .inproc(name: "server"),
                                                         configuration: fast) { _ in serverInbox.handler }
        let clientInbox = LinkInbox()
        let link = ReliableLink.connect(over: t, to: .inproc(name: "server"), configuration: fast,
                                        handler: clientInbox.handler)
        var disconnects = 0
        for i in 1...10_000 {
            try link.send(Envelope(protocolTag: .application, kind: 7, payload: [UInt8(truncatingIfNeeded: i), UInt8(i >> 8)]))
            if i % 2_500 == 0 && i < 10_000 {
                // Mid-stream: wait until this part is flowing, then break the connection.
                try await waitUntil("link up before disconnect \(disconnects + 1)") { link.isEstablished }
                try await waitUntil("some deliveries") { serverInbox.delivered.value.count > i - 2_500 }
                disconnects += t.faults.disconnect("server")
            }
        }
        try await waitUntil("10 000 deliveries") { serverInbox.delivered.value.count >= 10_000 }
        let got = serverInbox.delivered.value
        #expect(disconnects == 3)
        #expect(got.count == 10_000)
        #expect(got.map(\.sequence) == Array(1...10_000))
        #expect(got.map(\.payload) == (1...10_000).map { [UInt8(truncatingIfNeeded: $0), UInt8($0 >> 8)] })
        #expect(got.allSatisfy { $0.kind == 7 && $0.protocolTag == .application && !$0.flags.contains(.sequenced) })
        try await waitUntil("all acknowledged") { link.queuedCount == 0 }
        #expect(link.statistics.reconnects >= 4)
        #expect(clientInbox.undeliverable.value.isEmpty)
        // Replies flow the other way on the same session.
        let serverLink = try #require(listener.link(for: link.session))
        try serverLink.send(Envelope(protocolTag: .application, kind: 8, payload: [42]))
        try await waitUntil("reply") { clientInbox.delivered.value.count == 1 }
        #expect(clientInbox.delivered.value[0].payload == [42])
        await link.shutdown()
        await listener.shutdown()
        await t.shutdown()
    }

    @Test func deliveryTimeoutReturnsQueuedMessages() async throws {
        let clock = ManualClock()
        let t = InProcessTransport()
        let inbox = LinkInbox()
        // The liveness bound (which would return them as `.peerUnresponsive` after 5 s) is set
        // beyond the delivery timeout, so that this test sees the delivery timeout alone.
        let cfg = ReliableLink.Configuration(core: .init(deliveryTimeout: .seconds(30), livenessBound: .seconds(60)),
                                             clock: clock, automaticTicks: false)
        let link = ReliableLink.connect(over: t, to: .inproc(name: "nowhere"), configuration: cfg,
                                        handler: inbox.handler)
        try await waitUntil("the connect attempt to fail") { link.statistics.lastError != nil }
        for i in 1...3 { try link.send(envelope(0, payload: [UInt8(i)])) }
        clock.advance(by: .seconds(29))
        link.tick()
        #expect(inbox.undeliverable.value.isEmpty)
        clock.advance(by: .seconds(1))
        link.tick()
        let returned = inbox.undeliverable.value
        #expect(returned.count == 1)
        #expect(returned.first?.0.map(\.payload) == [[1], [2], [3]])
        guard case .timedOut(let after, let lastError)? = returned.first?.1 else {
            Issue.record("expected a timeout, got \(String(describing: returned.first?.1))")
            return
        }
        #expect(after == .seconds(30))
        #expect(lastError?.contains("inproc://nowhere") == true)
        #expect(link.queuedCount == 0)
        await link.shutdown()
        await t.shutdown()
    }

    @Test func shutdownReturnsUnacknowledgedAndRefusesMore() async throws {
        let t = InProcessTransport()
        let inbox = LinkInbox()
        let link = ReliableLink.connect(over: t, to: .inproc(name: "absent"), configuration: fast,
                                        handler: inbox.handler)
        for i in 1...5 { try link.send(envelope(UInt64(i))) }
        await link.shutdown()
        #expect(inbox.undeliverable.value.map(\.0.count) == [5])
        #expect(inbox.undeliverable.value.first?.1 == .linkClosed)
        #expect(throws: ReliableLinkError.closed) { try link.send(envelope(6)) }
        await t.shutdown()
    }

    @Test func oversizedMessageRefusedAtSend() async throws {
        let t = InProcessTransport()
        let link = ReliableLink.connect(over: t, to: .inproc(name: "absent"),
                                        configuration: .init(maximumFrameSize: 200), handler: LinkInbox().handler)
        // On the wire: prefix 8 + header 7 + the sequence the link adds 8 + payload.
        #expect(throws: ReliableLinkError.tooLarge(size: 23 + 178, limit: 200)) {
            try link.send(Envelope(protocolTag: .application, kind: 1, payload: [UInt8](repeating: 0, count: 178)))
        }
        #expect(throws: ReliableLinkError.tooLarge(size: 23 + 178, limit: 200)) {
            try link.send(contentsOf: [Envelope(protocolTag: .application, kind: 1, payload: [UInt8](repeating: 0, count: 178))])
        }
        try link.send(Envelope(protocolTag: .application, kind: 1, payload: [UInt8](repeating: 0, count: 177)))
        await link.shutdown()
        await t.shutdown()
    }

    @Test func survivesDropsAndDuplicatesOnTheWire() async throws {
        let t = InProcessTransport(configuration: .init(seed: 11))
        let serverInbox = LinkInbox()
        let cfg = ReliableLink.Configuration(
            // A lost envelope shows as a gap (the connection is closed and the next one resends)
            // or, for the last ones, as no ack progress; a lost hello as an unanswered handshake.
            core: .init(ackDelay: .milliseconds(1), connectTimeout: .milliseconds(200),
                        heartbeatInterval: .milliseconds(20), ackTimeout: .milliseconds(100)),
            tickInterval: .milliseconds(2))
        let listener = try await ReliableListener.listen(over: t, on: .inproc(name: "lossy"),
                                                         configuration: cfg) { _ in serverInbox.handler }
        let link = ReliableLink.connect(over: t, to: .inproc(name: "lossy"), configuration: cfg,
                                        handler: LinkInbox().handler)
        try await waitUntil("link up") { link.isEstablished }
        t.faults.setPlan(FaultPlan(dropProbability: 0.05, duplicateProbability: 0.05))
        for i in 1...500 { try link.send(envelope(0, payload: [UInt8(i & 0xFF), UInt8(i >> 8)])) }
        try await waitUntil("500 deliveries") { serverInbox.delivered.value.count >= 500 }
        #expect(serverInbox.delivered.value.map(\.sequence) == Array(1...500))
        #expect(t.faults.stats.dropped > 0 && t.faults.stats.duplicated > 0)
        t.faults.reset()
        await link.shutdown()
        await listener.shutdown()
        await t.shutdown()
    }

    @Test func listenerRejectsNonHelloAndClosesSilentConnections() async throws {
        let t = InProcessTransport()
        let listener = try await ReliableListener.listen(over: t, on: .inproc(name: "strict")) { _ in LinkInbox().handler }
        let rude = try await t.connect(to: .inproc(name: "strict"))
        let rudeGot = Received()
        rude.start(rudeGot.handler)
        try rude.send(envelope(1))                       // data before any hello
        try await waitUntil("rude peer dropped") { rudeGot.closes == [.closedByPeer] }
        let silent = try await t.connect(to: .inproc(name: "strict"))
        let silentGot = Received()
        silent.start(silentGot.handler)
        await listener.shutdown()
        try await waitUntil("silent peer closed at shutdown") { silentGot.closes == [.closedByPeer] }
        #expect(listener.links.isEmpty)
        await t.shutdown()
    }

    @Test func idleAcceptedSessionIsForgotten() async throws {
        let clock = ManualClock()
        let t = InProcessTransport()
        let cfg = ReliableLink.Configuration(clock: clock, automaticTicks: false, idleSessionTimeout: .seconds(120))
        let serverInbox = LinkInbox()
        let listener = try await ReliableListener.listen(over: t, on: .inproc(name: "idle"), configuration: cfg) { _ in
            serverInbox.handler
        }
        let client = ReliableLink.connect(over: t, to: .inproc(name: "idle"), configuration: cfg,
                                          handler: LinkInbox().handler)
        try client.send(envelope(0, payload: [1]))
        try await waitUntil("delivery") { serverInbox.delivered.value.count == 1 }
        let serverLink = try #require(listener.link(for: client.session))
        clock.advance(by: .milliseconds(5))
        serverLink.tick()                                    // delayed ack goes out
        try await waitUntil("ack") { client.queuedCount == 0 }
        await client.shutdown()                              // the initiator goes away for good
        try await waitUntil("server side sees the close") { !serverLink.isEstablished }
        clock.advance(by: .seconds(119))
        serverLink.tick()
        #expect(listener.links.count == 1)
        clock.advance(by: .seconds(1))
        serverLink.tick()
        #expect(listener.links.isEmpty)
        #expect(serverLink.isClosed)
        await listener.shutdown()
        await t.shutdown()
    }
}

/// A link on a `ManualClock` with automatic ticks sleeps on that clock: advancing it is all a
/// test does.
@Suite struct ReliableLinkManualClockTests {
    @Test func advancingTheManualClockTicksTheLink() async throws {
        let clock = ManualClock()
        let t = InProcessTransport()
        let inbox = LinkInbox()
        var cfg = ReliableLink.Configuration(clock: clock)   // automaticTicks: true
        cfg.core.livenessBound = .seconds(5)
        let link = ReliableLink.connect(over: t, to: .inproc(name: "nobody-here"), configuration: cfg,
                                        handler: inbox.handler)
        try link.send(envelope(0, payload: [7]))
        var advanced: Duration = .zero
        while inbox.undeliverable.value.isEmpty && advanced < .seconds(30) {
            // The link sleeps on the clock between its deadlines; step once it does.
            try await waitUntil("the link to sleep on the clock") { clock.sleeperCount >= 1 || !inbox.undeliverable.value.isEmpty }
            clock.advance(by: .milliseconds(500))   // wakes the sleeper at once (the count drops)
            advanced += .milliseconds(500)
        }
        let returned = try #require(inbox.undeliverable.value.first)
        #expect(returned.0.map(\.payload) == [[7]])
        #expect(returned.1 == .peerUnresponsive(after: .seconds(5)))
        #expect(advanced >= .seconds(5) && advanced <= .seconds(7))
        await link.shutdown()
        await t.shutdown()
    }
}
