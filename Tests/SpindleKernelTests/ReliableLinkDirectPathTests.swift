import SpindleSupport
import Testing
@_spi(SpindleTransportInternals) @testable import SpindleKernel

/// The core's direct forms — `send(_:now:transmit:)`, `send(contentsOf:now:transmit:)` and
/// `receive(batch:now:into:deliver:)` — and the frame log behind them.
@Suite struct ReliableLinkDirectPathTests {
    /// An initiator and acceptor that have completed their handshake.
    /// Two cores with a handshake done at time zero. (The tests jump the clock by seconds with
    /// no traffic in between: the liveness bound is set beyond those jumps.)
    private func establishedPair(_ configuration: ReliableLinkCore.Configuration = .init(livenessBound: .seconds(600)))
        -> (a: ReliableLinkCore, b: ReliableLinkCore) {
        let session = SessionID.generate()
        var a = ReliableLinkCore(role: .initiator, session: session, configuration: configuration)
        var b = ReliableLinkCore(role: .acceptor, session: session, configuration: configuration)
        _ = a.handle(.tick, now: .zero)
        let hello = a.handle(.connected, now: .zero)
        for case .transmit(let e) in hello {
            for case .transmit(let r) in b.handle(.received(e), now: .zero) { _ = a.handle(.received(r), now: .zero) }
        }
        return (a, b)
    }

    /// Payloads of varied sizes, so frames have different lengths.
    private func message(_ i: Int) -> Envelope {
        Envelope(protocolTag: .application, kind: UInt16(i % 7), correlation: UInt64(i * 3),
                 payload: [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: (i * 37) % 300))
    }

    @Test func directSendHandsTheSameFramesTheActionsWouldCarry() throws {
        var (a, _) = establishedPair()
        #expect(a.phase == .established)
        var frames: [UInt8] = []
        for i in 0..<50 {
            let error = a.send(message(i), now: .zero) { bytes in frames.append(contentsOf: bytes) }
            #expect(error == nil)
        }
        let batch = (50..<80).map(message)
        let r = a.send(contentsOf: batch, now: .zero) { bytes in frames.append(contentsOf: bytes) }
        #expect(r.accepted == 30 && r.error == nil)
        let decoded = try frames.withUnsafeBytes { try FrameDecoder.wholeFrames($0) }
        #expect(decoded.count == 80)
        for (i, e) in decoded.enumerated() {
            var expected = message(i)
            expected.sequence = UInt64(i + 1)
            expected.flags.insert(.sequenced)
            #expect(e == expected)
        }
    }

    @Test func queuedFramesWaitForTakeUnsentAndGoOutOnceInOrder() throws {
        var (a, _) = establishedPair()
        for i in 0..<10 { #expect(a.queue(message(i), now: .zero) == nil) }
        #expect(a.queue(contentsOf: (10..<25).map(message), now: .zero).accepted == 15)
        #expect(a.hasUnsent)
        var frames: [UInt8] = []
        a.takeUnsent { frames.append(contentsOf: $0) }
        #expect(!a.hasUnsent)
        a.takeUnsent { _ in Issue.record("nothing is left to take") }
        // An action-based send after more queued frames carries those first, then its own.
        _ = a.queue(message(25), now: .zero)
        var actions: [ReliableLinkCore.Action] = []
        #expect(a.send(message(26), now: .zero, into: &actions) == nil)
        #expect(!a.hasUnsent)
        var decoded = try frames.withUnsafeBytes { try FrameDecoder.wholeFrames($0) }
        for case .transmit(let e) in actions { decoded.append(e) }
        #expect(decoded.map(\.sequence) == Array(1...27))
        #expect(decoded.map(\.correlation) == (0..<27).map { UInt64($0 * 3) })
    }

    @Test func framesQueuedWhileDisconnectedGoOutWithTheRetransmissionNotTakeUnsent() {
        var (a, b) = establishedPair()
        _ = a.handle(.disconnected("cut"), now: .zero)
        for i in 0..<3 { _ = a.queue(message(i), now: .zero) }
        #expect(!a.hasUnsent)
        // Reconnect: the handshake retransmits everything unacknowledged as actions.
        _ = a.handle(.tick, now: .zero + .seconds(10))
        var resent: [Envelope] = []
        for case .transmit(let hello) in a.handle(.connected, now: .zero + .seconds(10)) {
            for case .transmit(let reply) in b.handle(.received(hello), now: .zero + .seconds(10)) {
                for case .transmit(let e) in a.handle(.received(reply), now: .zero + .seconds(10)) { resent.append(e) }
            }
        }
        #expect(a.phase == .established)
        #expect(resent.map(\.sequence) == [1, 2, 3])
        #expect(!a.hasUnsent)
    }

    @Test func directSendBeforeTheHandshakeOnlyQueues() {
        let session = SessionID.generate()
        var a = ReliableLinkCore(role: .initiator, session: session)
        var calls = 0
        #expect(a.send(message(1), now: .zero) { _ in calls += 1 } == nil)
        #expect(calls == 0 && a.queuedCount == 1)
    }

    @Test func receiveNamesTheEnvelopesToDeliverAndSkipsDuplicatesAndControl() {
        var (a, b) = establishedPair(.init(ackEvery: 1_000))
        var actions: [ReliableLinkCore.Action] = []
        _ = a.send(contentsOf: (0..<5).map(message), now: .zero, into: &actions)
        var data: [Envelope] = []
        for case .transmit(let e) in actions { data.append(e) }
        // Data 1…3, a duplicate of 2, a control envelope, then 4 and 5.
        let ack = Envelope(protocolTag: .reliable, kind: ReliableWire.ack, sequence: 0)
        let batch = [data[0], data[1], data[2], data[1], ack, data[3], data[4]]
        var deliver: [Int] = []
        var out: [ReliableLinkCore.Action] = []
        b.receive(batch: batch, now: .zero, into: &out) { deliver.append($0) }
        #expect(deliver == [0, 1, 2, 5, 6])
        #expect(b.duplicatesDropped == 1 && b.deliveredUpTo == 5)
        #expect(!out.contains { if case .deliver = $0 { return true } else { return false } })
    }

    @Test func aRunOfInOrderDataIsAcknowledgedOnceAtTheEndOfTheBatch() {
        var (a, b) = establishedPair(.init(ackEvery: 4))
        var actions: [ReliableLinkCore.Action] = []
        _ = a.send(contentsOf: (0..<6).map(message), now: .zero, into: &actions)
        var data: [Envelope] = []
        for case .transmit(let e) in actions { data.append(e) }
        var out: [ReliableLinkCore.Action] = []
        var delivered: [Int] = []
        b.receive(batch: Array(data[0..<5]), now: .zero, into: &out) { delivered.append($0) }
        #expect(delivered == [0, 1, 2, 3, 4])
        var acks: [UInt64] = []
        for case .transmit(let e) in out where e.protocolTag == .reliable && e.kind == ReliableWire.ack { acks.append(e.sequence) }
        #expect(acks == [5])
        // One more arrival is below `ackEvery` again: no ack until the delay passes.
        out = []
        b.receive(batch: [data[5]], now: .zero, into: &out) { delivered.append($0) }
        #expect(delivered.last == 0 && b.deliveredUpTo == 6 && out.isEmpty)
    }

    /// Thousands of frames through the log with acks and connection losses interleaved: the
    /// log grows, compacts and is copied (copy-on-write), and every retransmission decodes
    /// to what was sent.
    @Test func theFrameLogSurvivesGrowthCompactionCopiesAndRetransmission() {
        var (a, b) = establishedPair(.init(ackEvery: 16, livenessBound: .seconds(600)))
        var delivered: [Envelope] = []
        var snapshot: ReliableLinkCore? = nil
        for round in 0..<40 {
            var wire: [Envelope] = []
            var actions: [ReliableLinkCore.Action] = []
            for i in 0..<250 { _ = a.send(message(round * 250 + i), now: .zero, into: &actions) }
            if round == 7 { snapshot = a }          // a copy shares the log until one side writes
            for case .transmit(let e) in actions { wire.append(e) }
            if round % 5 == 4 {
                // The connection drops with this round in flight; reconnect and retransmit.
                _ = a.handle(.disconnected("test"), now: .zero)
                _ = b.handle(.disconnected("test"), now: .zero)
                _ = a.handle(.tick, now: .zero + .seconds(10))
                wire = []
                for case .transmit(let e) in a.handle(.connected, now: .zero + .seconds(10)) { wire.append(e) }
            }
            var replies: [ReliableLinkCore.Action] = []
            for e in wire {
                for act in b.handle(.received(e), now: .zero) {
                    switch act {
                    case .deliver(let d): delivered.append(d)
                    case .transmit(let r): replies.append(contentsOf: a.handle(.received(r), now: .zero))
                    default: break
                    }
                }
            }
            for case .transmit(let e) in replies where e.protocolTag != .reliable {
                // Retransmissions answered by the handshake reply.
                for case .deliver(let d) in b.handle(.received(e), now: .zero) { delivered.append(d) }
            }
        }
        #expect(delivered.count == 10_000)
        for (i, d) in delivered.enumerated() {
            var expected = message(i)
            expected.sequence = UInt64(i + 1)
            #expect(d == expected, "message \(i)")
            if d != expected { break }
        }
        // The snapshot still holds what was unacknowledged when it was taken.
        #expect(snapshot?.queuedCount ?? 0 > 0)
        var copy = snapshot!
        let returned = copy.handle(.abort, now: .zero)   // at once: no graceful `fin`
        guard case .undeliverable(let es, .linkClosed)? = returned.first else {
            Issue.record("expected the snapshot's messages back, got \(returned)")
            return
        }
        #expect(es.count == snapshot!.queuedCount)
        #expect(es.last.map { $0.payload == message(7 * 250 + 249).payload } == true)
    }
}

/// `send(encodedFrames:)` on a transport without its own (the in-process one: decoded and
/// sent as envelopes), and a reliable link's flow control.
@Suite struct EncodedFramesAndFlowControlTests {
    @Test func inProcessConnectionsDecodeEncodedFrames() async throws {
        let t = InProcessTransport()
        let got = Locked<[Envelope]>([])
        let listener = try await t.listen(on: .inproc(name: "frames")) { conn in
            conn.start(ConnectionHandler(onEnvelope: { e in got.withLock { $0.append(e) } }, onClose: { _ in }))
        }
        let conn = try await t.connect(to: listener.address)
        #expect(!conn.deliversDuringSend)
        let sent = (1...20).map { envelope(UInt64($0), payload: [UInt8]($0...40)) }
        var frames: [UInt8] = []
        for e in sent { try FrameEncoder().encode(e, into: &frames) }
        try frames.withUnsafeBytes { try conn.send(encodedFrames: $0) }
        #expect(throws: TransportError.self) {
            try [UInt8](frames.dropLast()).withUnsafeBytes { try conn.send(encodedFrames: $0) }
        }
        try await waitUntil("20 envelopes") { got.value.count >= 20 }
        #expect(got.value == sent)
        await t.shutdown()

        let inline = InProcessTransport(configuration: .init(delivery: .inline))
        let l2 = try await inline.listen(on: .inproc(name: "inline")) { $0.start(ConnectionHandler(onEnvelope: { _ in }, onClose: { _ in })) }
        #expect(try await inline.connect(to: l2.address).deliversDuringSend)
        await inline.shutdown()
    }

    @Test func waitUntilWritableSuspendsAboveTheHighWatermarkUntilAcked() async throws {
        let t = InProcessTransport()
        let delivered = Locked<Int>(0)
        let listener = try await ReliableListener.listen(over: t, on: .inproc(name: "acks")) { _ in
            ReliableLink.Handler(onDeliver: { _ in delivered.withLock { $0 += 1 } }, onUndeliverable: { _, _ in })
        }
        let config = ReliableLink.Configuration(core: .init(ackEvery: 8, ackDelay: .milliseconds(1)),
                                                tickInterval: .milliseconds(1),
                                                writableHighWatermark: 100, writableLowWatermark: 40)
        let link = ReliableLink.connect(over: t, to: listener.address, configuration: config,
                                        handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
        for i in 0..<1_000 {
            try link.send(envelope(0, payload: [UInt8(truncatingIfNeeded: i)]))
            if i % 50 == 49 {
                try await link.waitUntilWritable()
                // Only sends raise the queue, and none happen while waiting.
                #expect(link.queuedCount <= 100)
            }
        }
        try await waitUntil("1 000 deliveries") { delivered.value == 1_000 }
        await link.shutdown()
        await listener.shutdown()
        await t.shutdown()
    }

    @Test func waitUntilWritableThrowsClosedWhenTheLinkCloses() async throws {
        let t = InProcessTransport()
        let config = ReliableLink.Configuration(writableHighWatermark: 10, writableLowWatermark: 5)
        // Nothing listens: nothing is ever acknowledged.
        let link = ReliableLink.connect(over: t, to: .inproc(name: "nowhere"), configuration: config,
                                        handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
        for _ in 0..<11 { try link.send(envelope(0)) }
        #expect(!link.isWritable)
        let waiter = Task { () -> ReliableLinkError? in
            do throws(ReliableLinkError) {
                try await link.waitUntilWritable()
                return nil
            } catch {
                return error
            }
        }
        try await waitUntil("the waiter to suspend") { link.writableWaiterCount == 1 }
        link.close()
        let outcome = await waiter.value
        #expect(outcome == ReliableLinkError.closed)
        await link.shutdown()
        await t.shutdown()
    }
}

@Suite struct ViewBatchHandlerTests {
    /// A transport that does not decode in place (in-process) calls the owned batch form.
    @Test func inProcessCallsTheOwnedBatchForm() async throws {
        let t = InProcessTransport()
        let owned = Locked<[Envelope]>([])
        let views = Locked<Int>(0)
        let listener = try await t.listen(on: .inproc(name: "views")) { conn in
            conn.start(ConnectionHandler(onEnvelopes: { batch in owned.withLock { $0 += batch } },
                                         onEnvelopeViews: { vs in views.withLock { $0 += vs.count } },
                                         onClose: { _ in }))
        }
        let conn = try await t.connect(to: listener.address)
        let sent = (1...10).map { envelope(UInt64($0), payload: [UInt8($0)]) }
        try conn.send(contentsOf: sent)
        try await waitUntil("10 envelopes") { owned.value.count >= 10 }
        #expect(owned.value == sent)
        #expect(views.value == 0)
        await t.shutdown()
    }

    @Test func coreReceiveOfViewsMatchesReceiveOfEnvelopes() {
        let session = SessionID.generate()
        var a = ReliableLinkCore(role: .initiator, session: session)
        var b1 = ReliableLinkCore(role: .acceptor, session: session)
        _ = a.handle(.tick, now: .zero)
        var hello: Envelope? = nil
        for case .transmit(let e) in a.handle(.connected, now: .zero) { hello = e }
        for case .transmit(let r) in b1.handle(.received(hello!), now: .zero) { _ = a.handle(.received(r), now: .zero) }
        #expect(a.phase == .established && b1.phase == .established)
        var b2 = b1
        var actions: [ReliableLinkCore.Action] = []
        _ = a.send(contentsOf: (0..<40).map { envelope(0, payload: [UInt8($0)]) }, now: .zero, into: &actions)
        var data: [Envelope] = []
        for case .transmit(let e) in actions { data.append(e) }
        let batch = data + data[30...] + [Envelope(protocolTag: .reliable, kind: ReliableWire.ack, sequence: 0)]
        var fromEnvelopes: [Int] = [], fromViews: [Int] = []
        var out1: [ReliableLinkCore.Action] = [], out2: [ReliableLinkCore.Action] = []
        b1.receive(batch: batch, now: .zero, into: &out1) { fromEnvelopes.append($0) }
        var frames: [UInt8] = []
        for e in batch { try? FrameEncoder().encode(e, into: &frames) }
        var decoder = FrameDecoder()
        var views: [EnvelopeView] = []
        frames.withUnsafeBytes { raw in
            _ = try? decoder.decode(raw) { v in views.append(v); return true }
            b2.receive(views: views, now: .zero, into: &out2) { fromViews.append($0) }
        }
        #expect(fromEnvelopes == Array(0..<40))
        #expect(fromViews == fromEnvelopes)
        #expect(out1 == out2)
        #expect(b1.duplicatesDropped == 10 && b2.duplicatesDropped == 10)
    }
}

@Suite struct AcceptorReattachTests {
    /// The initiator comes back on a new connection while the acceptor still holds the old
    /// one (half open): the acceptor must not send data on the new connection before the
    /// new hello, or the initiator would take it as a protocol violation.
    @Test func aReplacedConnectionWaitsForTheNewHello() async throws {
        let t = InProcessTransport()
        let listener = try await ReliableListener.listen(over: t, on: .inproc(name: "acceptor")) { _ in
            ReliableLink.Handler(onDeliver: { _ in }, onUndeliverable: { _, _ in })
        }
        let link = ReliableLink.connect(over: t, to: listener.address,
                                        handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
        try await waitUntil("the session") { listener.link(for: link.session)?.isEstablished == true }
        let acceptor = try #require(listener.link(for: link.session))
        // A raw peer standing in for the initiator's new connection.
        let seen = Locked<[Envelope]>([])
        let raw = try await t.listen(on: .inproc(name: "raw")) { conn in
            conn.start(ConnectionHandler(onEnvelope: { e in seen.withLock { $0.append(e) } }, onClose: { _ in }))
        }
        let replacement = try await t.connect(to: raw.address)
        #expect(acceptor.attach(replacement) != nil)
        #expect(!acceptor.isEstablished)
        try acceptor.send(envelope(0, payload: [9]))
        #expect(acceptor.queuedCount >= 1)
        // Nothing reaches the new connection until its hello. A marker sent after the link's
        // send on the same connection (FIFO) shows that anything the link sent has arrived.
        try replacement.send(envelope(77))
        try await waitUntil("the marker") { seen.value.contains { $0.sequence == 77 } }
        #expect(!seen.value.contains { $0.payload == [9] })
        await link.shutdown()
        await listener.shutdown()
        await t.shutdown()
    }
}
