import Testing
import Synchronization
import SpindleKernel
import SpindleSupport

/// `ConnectionHandler(onEnvelopeView:)` works on a transport that delivers owned envelopes.
@Suite struct ConnectionHandlerViewTests {
    @Test func inProcessTransportDeliversViewsOfItsEnvelopes() async throws {
        let t = InProcessTransport()
        let got = Locked<[Envelope]>([])
        _ = try await t.listen(on: .inproc(name: "views")) { c in
            c.start(ConnectionHandler(
                onEnvelopeView: { view in
                    let owned = view.envelope
                    got.withLock { $0.append(owned) }
                },
                onClose: { _ in }))
        }
        let client = try await t.connect(to: .inproc(name: "views"))
        let sent = (0..<50).map { sampleEnvelope($0) }
        try client.send(contentsOf: sent)   // the protocol's default: one send per envelope
        try await waitUntil("50 views") { got.withLock { $0.count } == 50 }
        #expect(got.withLock { $0 } == sent)
        await t.shutdown()
    }

    @Test func viewHandlerIsCalledThroughOnEnvelope() {
        let calls = Mutex(0)
        let handler = ConnectionHandler(onEnvelopeView: { view in
            #expect(view.payload.count == 3 && view.kind == 9)
            calls.withLock { $0 += 1 }
        }, onClose: { _ in })
        #expect(handler.onEnvelopeView != nil)
        handler.onEnvelope(Envelope(protocolTag: .application, kind: 9, payload: [1, 2, 3]))
        #expect(calls.withLock { $0 } == 1)
        let owned = ConnectionHandler(onEnvelope: { _ in }, onClose: { _ in })
        #expect(owned.onEnvelopeView == nil)
    }

    @Test func inProcessIsWritableFollowsThePeersInbox() async throws {
        let t = InProcessTransport(configuration: .init(highWatermark: 4, lowWatermark: 2))
        let accepted = Locked<(any TransportConnection)?>(nil)
        _ = try await t.listen(on: .inproc(name: "slow")) { c in accepted.withLock { $0 = c } }
        let client = try await t.connect(to: .inproc(name: "slow"))
        // The server has not started: its inbox fills.
        for i in 1...4 { try client.send(envelope(UInt64(i))) }
        #expect(client.isWritable)
        try client.send(envelope(5))
        #expect(!client.isWritable)
        let server = try #require(accepted.withLock { $0 })
        let got = Locked<Int>(0)
        server.start(ConnectionHandler(onEnvelopes: { batch in got.withLock { $0 += batch.count } }, onClose: { _ in }))
        try await client.waitUntilWritable()
        try await waitUntil("5 envelopes") { got.withLock { $0 } == 5 }
        #expect(client.isWritable)
        await t.shutdown()
    }
}
