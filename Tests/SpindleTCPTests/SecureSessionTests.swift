import SpindleEventLoop
import SpindleKernel
import Testing
@testable import SpindleTCP

/// The encrypted session against an attacker on the path: a relay between client and server
/// that reads, rewrites and replays bytes (docs/tcp.md, "Threat model").
@Suite("Secure sessions", .timeLimit(.minutes(2)))
struct SecureSessionTests {
    static let key = ClusterKey.random()
    /// Bytes of the keyed handshake in the client's stream: preamble, Noise message, record 0.
    static let clientHandshakeBytes = TCPHandshake.preambleSize + TCPHandshake.firstMessageSize + TCPHandshake.confirmationSize

    static func keyed(_ key: ClusterKey? = SecureSessionTests.key, node: NodeID? = nil) -> TCPTransport.Configuration {
        var c = TCPTransport.Configuration()
        c.clusterKey = key
        c.nodeID = node
        return c
    }

    /// A distinctive payload to look for in captured bytes.
    static let marker = Array(String(repeating: "the secret payload of a spindle envelope; ", count: 40).utf8)

    @Test("a relay sees none of the plaintext with a key (and all of it without one)")
    func relayCannotRead() async throws {
        for key in [Self.key, nil] as [ClusterKey?] {
            try await withLoop { loop in
                let server = TCPTransport(loop: loop, configuration: Self.keyed(key))
                let client = TCPTransport(loop: loop, configuration: Self.keyed(key))
                let listener = try await listenEcho(server)
                let relay = try await ByteRelay.start(on: loop, upstream: listener.address)
                let conn = try await client.connect(to: relay.address)
                let (received, _) = collect(conn)
                let sent = Envelope(protocolTag: .application, kind: 9, payload: Self.marker)
                try conn.send(sent)
                #expect(try await received.first("the echo through the relay") == sent)
                let upstream = relay.bytes(.toServer), downstream = relay.bytes(.toClient)
                if key != nil {
                    #expect(!upstream.contains(subsequence: Array(Self.marker.prefix(16))),
                            "the payload crossed the relay in the clear")
                    #expect(!downstream.contains(subsequence: Array(Self.marker.prefix(16))))
                    #expect(!upstream.contains(subsequence: Self.key.bytes), "the key crossed the wire")
                } else {
                    // The control: the same traffic without a key is readable, so the check above
                    // can fail.
                    #expect(upstream.contains(subsequence: Array(Self.marker.prefix(16))))
                }
                relay.close()
                await client.shutdown()
                await server.shutdown()
            }
        }
    }

    @Test("flipping any one byte of a record closes the connection, naming the record's offset")
    func tamperedRecords() async throws {
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: Self.keyed())
            let client = TCPTransport(loop: loop, configuration: Self.keyed())
            let serverCloses = Collector<CloseReason>()
            let listener = try await listenEcho(server, closes: serverCloses)
            let message = envelope(1)
            let recordSize = RecordLayout.headerSize + FrameEncoder.frameSize(of: message) + RecordLayout.tagSize
            let first = Self.clientHandshakeBytes
            for k in 0..<recordSize {
                let relay = try await ByteRelay.start(on: loop, upstream: listener.address, tamper: flipping(byteAt: first + k))
                let conn = try await client.connect(to: relay.address)
                let (received, _) = collect(conn)
                try conn.send(message)
                // A flipped length may leave the server waiting for bytes that never come: the
                // client's end of stream then cuts the record short.
                conn.close()
                let reasons = try await serverCloses.wait(count: k + 1, "the server to close tampered connection \(k)")
                let reason = reasons[k]
                #expect(reason.isProtocolViolation(containing: "record at stream offset \(first)"), "byte \(k): \(reason)")
                #expect(received.items.isEmpty, "byte \(k): a tampered record was answered")
                relay.close()
            }
            // The listener still serves an honest client.
            let good = try await client.connect(to: listener.address)
            let (received, _) = collect(good)
            try good.send(envelope(2))
            #expect(try await received.first("an echo after the tampering") == envelope(2))
            await client.shutdown()
            await server.shutdown()
        }
    }

    @Test("replaying a recorded client session to the server fails the handshake")
    func replayedSession() async throws {
        let failures = Collector<CloseReason>()
        var serverConfig = Self.keyed()
        serverConfig.onHandshakeFailure = { _, reason in failures.append(reason) }
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: serverConfig)
            let client = TCPTransport(loop: loop, configuration: Self.keyed())
            let accepted = Collector<Bool>()
            let listener = try await server.listen(on: .tcp(host: "127.0.0.1", port: 0)) { conn in
                accepted.append(true)
                conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
            }
            let relay = try await ByteRelay.start(on: loop, upstream: listener.address)
            let conn = try await client.connect(to: relay.address)
            let (received, _) = collect(conn)
            try conn.send(envelope(1, payload: Self.marker))
            try await received.first("the recorded session's echo")
            let recording = relay.bytes(.toServer)

            let replayer = try await RawPeer.connect(loop: loop, to: listener.address)
            replayer.channel.write(recording)
            let reason = try await failures.first("the replay to be refused")
            #expect(reason.isAuthenticationFailure(containing: "confirmation record"), "\(reason)")
            _ = try await replayer.closed.first("the replayer to be disconnected")
            #expect(accepted.items.count == 1, "the replayed session was accepted")
            relay.close()
            await client.shutdown()
            await server.shutdown()
        }
    }

    @Test("a client with the wrong key gets only a closed connection; the server logs one refusal")
    func wrongKey() async throws {
        let logs = Collector<String>()
        try await withLoop { loop in
            var serverConfig = capturingConfiguration(logs, key: Self.key)
            serverConfig.nodeID = NodeID.generate()
            let server = TCPTransport(loop: loop, configuration: serverConfig)
            let client = TCPTransport(loop: loop, configuration: Self.keyed(.random()))
            let listener = try await listenEcho(server)
            let relay = try await ByteRelay.start(on: loop, upstream: listener.address)
            do throws(TransportError) {
                _ = try await client.connect(to: relay.address)
                Issue.record("a client with the wrong key connected")
            } catch {
                guard case .closed(let reason) = error else { Issue.record("unexpected \(error)"); return }
                #expect(reason.isAuthenticationFailure(containing: "refuses this side's cluster key"), "\(reason)")
            }
            #expect(relay.bytes(.toClient).isEmpty, "the server answered a client without the key")
            #expect(server.refusals == ["127.0.0.1": 1])
            #expect(logs.items.filter { $0.contains("refused connection") }.count == 1)
            relay.close()
            await client.shutdown()
            await server.shutdown()
        }
    }

    @Test("an envelope claiming another source than the handshake fixed is refused")
    func forgedSource() async throws {
        let alice = NodeID.generate(), mallory = NodeID.generate()
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: Self.keyed())
            let serverCloses = Collector<CloseReason>()
            let listener = try await listenEcho(server, closes: serverCloses)

            // Announced in the handshake: only that source passes.
            let client = TCPTransport(loop: loop, configuration: Self.keyed(node: alice))
            let conn = try await client.connect(to: listener.address)
            let (received, _) = collect(conn)
            try conn.send(Envelope(protocolTag: .application, kind: 1, source: alice, payload: [1]))
            try await received.first("an honest envelope's echo")
            try conn.send(Envelope(protocolTag: .application, kind: 1, source: mallory, payload: [2]))
            let reason = try await serverCloses.first("the forged source to be refused")
            #expect(reason == .forgedSource(claimed: mallory, bound: alice, peer: "\(conn.localAddress)"))

            // Announced none: the first source seen is the only one.
            let anonymous = TCPTransport(loop: loop, configuration: Self.keyed())
            let other = try await anonymous.connect(to: listener.address)
            let (echoes, _) = collect(other)
            try other.send(Envelope(protocolTag: .application, kind: 1, source: alice, payload: [3]))
            try await echoes.first("the first source's echo")
            try other.send(Envelope(protocolTag: .application, kind: 1, source: mallory, payload: [4]))
            let second = try await serverCloses.wait(count: 2, "the switched source to be refused")[1]
            #expect(second == .forgedSource(claimed: mallory, bound: alice, peer: "\(other.localAddress)"))
            #expect(conn.peerNode == nil && other.peerNode == nil)
            await client.shutdown()
            await anonymous.shutdown()
            await server.shutdown()
        }
    }

    @Test("reordered, truncated and oversized records each close the connection with a typed error")
    func badRecords() async throws {
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: Self.keyed())
            let serverCloses = Collector<CloseReason>()
            let listener = try await listenEcho(server, closes: serverCloses)
            let frame = try FrameEncoder().encode(envelope(1))

            var reorder = try await RawNoiseClient.connect(loop: loop, to: listener.address, key: Self.key)
            let at = reorder.written
            let r1 = try reorder.record(frame), r2 = try reorder.record(frame)
            reorder.write(r2 + r1)
            var reason = try await serverCloses.wait(count: 1, "the reordered records")[0]
            #expect(reason.isProtocolViolation(containing: "record at stream offset \(at) does not authenticate as record 1"), "\(reason)")

            var truncate = try await RawNoiseClient.connect(loop: loop, to: listener.address, key: Self.key)
            let cutAt = truncate.written
            let whole = try truncate.record(frame)
            truncate.write(Array(whole.prefix(whole.count - 5)))
            truncate.peer.channel.close()
            reason = try await serverCloses.wait(count: 2, "the truncated record")[1]
            #expect(reason.isProtocolViolation(containing: "record at stream offset \(cutAt) was cut short"), "\(reason)")

            var oversize = try await RawNoiseClient.connect(loop: loop, to: listener.address, key: Self.key)
            let bigAt = oversize.written
            oversize.write([0xFF, 0xFF])
            reason = try await serverCloses.wait(count: 3, "the oversized record")[2]
            #expect(reason.isProtocolViolation(containing: "record at stream offset \(bigAt) announces 65535 bytes"), "\(reason)")
            _ = try await oversize.peer.closed.first("the oversized peer to be disconnected")
            await server.shutdown()
        }
    }

    @Test("a hello with correlation UInt64.max, or data with sequence UInt64.max, closes only that connection")
    func hostileReliableLinkValues() async throws {
        try await withLoop { loop in
            let server = TCPTransport(loop: loop, configuration: Self.keyed())
            let client = TCPTransport(loop: loop, configuration: Self.keyed())
            let delivered = Collector<Envelope>()
            let listener = try await ReliableListener.listen(over: server, on: .tcp(host: "127.0.0.1", port: 0)) { link in
                ReliableLink.Handler(onDeliver: { delivered.append($0); try? link.send($0) }, onUndeliverable: { _, _ in })
            }
            let session = SessionID.generate()
            func hello(correlation: UInt64, sequence: UInt64 = 0) -> Envelope {
                var payload = [UInt8](repeating: 0, count: ReliableWire.handshakePayloadSize)
                payload.withUnsafeMutableBytes { raw in
                    raw.storeBytes(of: session.raw.high.littleEndian, toByteOffset: 0, as: UInt64.self)
                    raw.storeBytes(of: session.raw.low.littleEndian, toByteOffset: 8, as: UInt64.self)
                    raw.storeBytes(of: UInt64(42).littleEndian, toByteOffset: 16, as: UInt64.self)
                }
                return Envelope(protocolTag: .reliable, kind: ReliableWire.hello, correlation: correlation,
                                sequence: sequence, payload: payload)
            }
            // 1. A hello whose lowest-held sequence is UInt64.max: refused before any session exists.
            let first = try await client.connect(to: listener.address)
            let (_, firstCloses) = collect(first)
            try first.send(hello(correlation: .max))
            #expect(try await firstCloses.first("the hostile hello's connection to close") == .closedByPeer)
            #expect(listener.links.isEmpty)

            // 2. A valid hello, then data with sequence UInt64.max: that connection closes.
            let second = try await client.connect(to: listener.address)
            let (replies, secondCloses) = collect(second)
            try second.send(hello(correlation: 1))
            try await replies.first("the helloAck")
            var data = Envelope(protocolTag: .application, kind: 1, sequence: .max, payload: [1])
            data.flags.insert(.sequenced)
            try second.send(data)
            #expect(try await secondCloses.first("the overflowing data's connection to close") == .closedByPeer)
            #expect(delivered.items.isEmpty)
            #expect(listener.refusals.values.reduce(0, +) == 1)

            // 3. The listener still serves a well-behaved link.
            let echoes = Collector<Envelope>()
            let link = ReliableLink.connect(over: client, to: listener.address, handler: .init(
                onDeliver: { echoes.append($0) }, onUndeliverable: { _, _ in }))
            try link.send(envelope(7))
            #expect(try await echoes.first("the well-behaved link's echo").correlation == 7)
            await link.shutdown()
            await listener.shutdown()
            await client.shutdown()
            await server.shutdown()
        }
    }
}
