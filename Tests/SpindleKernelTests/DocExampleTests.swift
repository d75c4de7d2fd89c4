import Testing
import SpindleKernel
import SpindleSupport

/// The example of docs/kernel.md, with its prints turned into checks.
@Suite struct DocExampleTests {
    @Test func kernelPageExample() async throws {
        let got = Locked<[[UInt8]]>([])
        let transport = InProcessTransport()
        let listener = try await ReliableListener.listen(over: transport, on: .inproc(name: "agent")) { link in
            ReliableLink.Handler(
                onDeliver: { e in got.withLock { $0.append(e.payload) } },
                onUndeliverable: { msgs, why in Issue.record("\(msgs.count) replies lost: \(why)") })
        }
        let client = ReliableLink.connect(
            over: transport, to: .inproc(name: "agent"),
            handler: .init(onDeliver: { _ in }, onUndeliverable: { msgs, why in Issue.record("\(msgs.count) lost: \(why)") }))
        try client.send(Envelope(protocolTag: .application, kind: 1, payload: Array("hello".utf8)))
        try await waitUntil("first delivery") { got.value.count == 1 }

        // In a test: break the connection; the link reconnects and nothing is lost or repeated.
        transport.faults.disconnect("agent")
        try client.send(Envelope(protocolTag: .application, kind: 1, payload: Array("again".utf8)))
        try await waitUntil("second delivery") { got.value.count == 2 }
        #expect(got.value == [Array("hello".utf8), Array("again".utf8)])

        // Shutting down returns what is not yet acknowledged; wait for the acks first.
        try await waitUntil("acknowledged") { client.queuedCount == 0 }

        await client.shutdown(); await listener.shutdown(); await transport.shutdown()
    }
}
