import SpindleKernel
import Testing
import SpindleTCP

/// The worked example of docs/tcp.md, compiled and run.
@Suite("docs/tcp.md example", .timeLimit(.minutes(1)))
struct DocExampleTests {
    @Test("the documented echo example runs as written")
    func example() async throws {
        let keyFile = try TemporaryKeyFile()
        defer { keyFile.remove() }
        try await example(keyFile: keyFile.path)
    }

    func example(keyFile: String) async throws {
        var config = TCPTransport.Configuration()
        config.clusterKey = try ClusterKey(contentsOfFile: keyFile)   // written by `spindle keygen`

        let transport = try TCPTransport(loopCount: 1, configuration: config)

        let listener = try await transport.listen(on: Address(parsing: "tcp://127.0.0.1:0")) { conn in
            conn.start(ConnectionHandler(
                onEnvelope: { envelope in try? conn.send(envelope) },
                onClose: { _ in }))
        }

        let conn = try await transport.connect(to: listener.address)
        try conn.send(Envelope(protocolTag: .application, kind: 1, payload: Array("hi".utf8)))
        var replies: [[UInt8]] = []
        for try await reply in conn.envelopes() {
            replies.append(reply.payload)
            break
        }
        await transport.shutdown()
        #expect(replies == [Array("hi".utf8)])
    }
}
