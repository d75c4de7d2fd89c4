import SpindleEventLoop
import NetworkTestSupport
import SpindleKernel
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SpindleTCP

/// TCPTransport over real sockets on 127.0.0.1 and Unix-domain sockets.
@Suite("TCP transport", .timeLimit(.minutes(1)))
struct TCPTransportTests {
    static let localhost = Address.tcp(host: "127.0.0.1", port: 0)

    @Test("echo over TCP on 127.0.0.1:0 returns the envelope unchanged")
    func echoTCP() async throws {
        try await withTransport { transport, _ in
            let listener = try await listenEcho(transport)
            guard case .tcp(let host, let port) = listener.address else {
                Issue.record("listener address \(listener.address) is not tcp")
                return
            }
            #expect(host == "127.0.0.1" && port != 0)
            let conn = try await transport.connect(to: listener.address)
            let (received, _) = collect(conn)
            let sent = Envelope(protocolTag: .application, kind: 42, flags: [.oneWay],
                                source: NodeID.generate(), destination: NodeID.generate(),
                                correlation: 7, sequence: 9, stamp: HLCTimestamp(physical: 123, logical: 4),
                                deadlineBudgetNanos: 5_000, payload: Array("hello".utf8))
            try conn.send(sent)
            #expect(try await received.first("the echo") == sent)
            #expect(conn.remoteAddress == listener.address)
        }
    }

    @Test("echo over a Unix-domain socket")
    func echoUnix() async throws {
        try await withTransport { transport, _ in
            let path = temporarySocketPath()
            let listener = try await listenEcho(transport, on: .unix(path: path))
            #expect(listener.address == .unix(path: path))
            let conn = try await transport.connect(to: .unix(path: path))
            let (received, _) = collect(conn)
            try conn.send(envelope(1))
            #expect(try await received.first("the echo") == envelope(1))
        }
    }

    @Test("10 000 envelopes come back in the order they were sent")
    func fifo() async throws {
        try await withEchoClient { conn, received, _ in
            let n = 10_000
            for i in 0..<n {
                try conn.send(envelope(i, payload: [UInt8(truncatingIfNeeded: i)]))
                if i % 1000 == 999 { try await conn.waitUntilWritable() }
            }
            let got = try await received.wait(count: n, "echoed envelopes")
            #expect(got.map(\.sequence) == (0..<n).map(UInt64.init))
            #expect(got.allSatisfy { $0.payload == [UInt8(truncatingIfNeeded: $0.sequence)] })
        }
    }

    @Test("sends from several threads at once all arrive, each sender's in order, on the loop thread")
    func concurrentSenders() async throws {
        let group = try EventLoopGroup(loopCount: 2, namePrefix: "tcp-test")
        let transport = TCPTransport(group: group)
        let onLoop = Collector<Bool>()
        let received = Collector<Envelope>()
        let listener = try await transport.listen(on: Self.localhost) { conn in
            let loop = (conn as! TCPConnection).loop
            conn.start(ConnectionHandler(
                onEnvelope: { e in
                    if e.sequence == 0 { onLoop.append(loop.inEventLoop) }
                    received.append(e)
                },
                onClose: { _ in }))
        }
        let conn = try await transport.connect(to: listener.address)
        let senders = 4, perSender = 2_500
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for sender in 0..<senders {
                tasks.addTask {
                    for i in 0..<perSender {
                        try conn.send(Envelope(protocolTag: .application, kind: UInt16(sender), sequence: UInt64(i)))
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let got = try await received.wait(count: senders * perSender, "envelopes from every sender")
        for sender in 0..<senders {
            let seqs = got.filter { $0.kind == UInt16(sender) }.map(\.sequence)
            #expect(seqs == (0..<perSender).map(UInt64.init), "sender \(sender) out of order or incomplete")
        }
        #expect(onLoop.items.allSatisfy { $0 } && onLoop.items.count == senders)
        await transport.shutdown()
        for loop in group.loops { #expect(await loop.openHandleCount == 0) }
        await group.shutdown()
    }

    @Test("envelopes that arrive before start() are buffered and delivered first, in order")
    func bufferedBeforeStart() async throws {
        try await withTransport { transport, _ in
            let accepted = Collector<any TransportConnection>()
            let listener = try await transport.listen(on: Self.localhost) { accepted.append($0) }
            let conn = try await transport.connect(to: listener.address)
            for i in 0..<200 { try conn.send(envelope(i)) }
            let server = try await accepted.first("the accepted connection")
            let (received, _) = collect(server)
            let got = try await received.wait(count: 200, "buffered envelopes")
            #expect(got.map(\.sequence) == (0..<200).map(UInt64.init))
        }
    }

    @Test("a payload filling the maximum frame exactly is carried; one byte more is refused")
    func largePayload() async throws {
        var config = TCPTransport.Configuration()
        config.maxFrameSize = 1 << 20
        try await withEchoClient(config) { conn, received, _ in
            let fits = (1 << 20) - FrameEncoder.frameSize(of: envelope(1, payload: []))
            let big = envelope(1, payload: (0..<fits).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            try conn.send(big)
            #expect(try await received.first("the large echo") == big)
            #expect(throws: TransportError.frameTooLarge(size: (1 << 20) + 1, limit: 1 << 20)) {
                try conn.send(envelope(2, payload: Array(repeating: 0, count: fits + 1)))
            }
            // The refused send did not disturb the connection.
            try conn.send(envelope(3))
            #expect(try await received.wait(count: 2, "the echo after a refused send")[1] == envelope(3))
        }
    }

    @Test("a peer sending garbage frames is dropped while another client keeps working")
    func garbageAfterHandshake() async throws {
        let logs = Collector<String>()
        let serverCloses = Collector<CloseReason>()
        try await withTransport(capturingConfiguration(logs)) { transport, loop in
            let listener = try await listenEcho(transport, closes: serverCloses)
            let good = try await transport.connect(to: listener.address)
            let (goodReceived, _) = collect(good)
            try good.send(envelope(1))
            try await goodReceived.first("the first echo")

            let raw = try await RawPeer.connect(loop: loop, to: listener.address)
            raw.channel.write(TCPHandshake.preamble(role: .initiator, mode: .plain) + TCPHandshake.identity(nil))
            raw.channel.write(Array("GET / HTTP/1.1\r\nHost: spindle\r\n\r\n".utf8))
            _ = try await raw.closed.first("the garbage peer to be disconnected")

            let reason = try await serverCloses.first("the server side to close")
            guard case .protocolViolation(let text) = reason else {
                Issue.record("expected a protocol violation, got \(reason)")
                return
            }
            #expect(text.contains("byte 0"), "\(text)")
            #expect(logs.items.contains { $0.contains("protocol violation") })

            try good.send(envelope(2))
            #expect(try await goodReceived.wait(count: 2, "the echo after the garbage peer")[1] == envelope(2))
            let second = try await transport.connect(to: listener.address)
            let (secondReceived, _) = collect(second)
            try second.send(envelope(3))
            #expect(try await secondReceived.first("an echo on a new connection") == envelope(3))
        }
    }

    @Test("bytes that are not a SpindleTCP preamble are rejected before any envelope")
    func garbageBeforeHandshake() async throws {
        let logs = Collector<String>()
        let failures = Collector<CloseReason>()
        var config = capturingConfiguration(logs)
        config.onHandshakeFailure = { _, reason in failures.append(reason) }
        try await withTransport(config) { transport, loop in
            let accepted = Collector<Bool>()
            let listener = try await transport.listen(on: Self.localhost) { _ in accepted.append(true) }
            let raw = try await RawPeer.connect(loop: loop, to: listener.address)
            raw.channel.write(Array("SSH-2.0-OpenSSH\r\n".utf8))
            _ = try await raw.closed.first("the peer to be disconnected")
            let reason = try await failures.first("the handshake failure")
            #expect(reason.isProtocolViolation(containing: "byte 1"), "\(reason)")
            #expect(accepted.items.isEmpty)
        }
    }

    @Test("an oversized frame closes only that connection, naming the byte offset")
    func oversizedFrame() async throws {
        let serverCloses = Collector<CloseReason>()
        var config = TCPTransport.Configuration()
        config.maxFrameSize = 64 << 10
        try await withTransport(config) { transport, loop in
            let listener = try await listenEcho(transport, closes: serverCloses)
            let good = try await transport.connect(to: listener.address)
            let (goodReceived, goodCloses) = collect(good)

            let raw = try await RawPeer.connect(loop: loop, to: listener.address)
            raw.channel.write(TCPHandshake.preamble(role: .initiator, mode: .plain) + TCPHandshake.identity(nil))
            // A valid prefix announcing a 1 GiB payload.
            raw.channel.write([0x53, 0x50, 2, 7] + withUnsafeBytes(of: UInt32(1 << 30).littleEndian, Array.init))
            _ = try await raw.closed.first("the oversized peer to be disconnected")
            let reason = try await serverCloses.first("the server side to close")
            #expect(reason.isProtocolViolation(containing: "byte 4"), "\(reason)")
            #expect(reason.isProtocolViolation(containing: "exceeds the limit of 65536"), "\(reason)")

            try good.send(envelope(5))
            #expect(try await goodReceived.first("an echo after the oversized peer") == envelope(5))
            #expect(goodCloses.items.isEmpty)
            #expect(serverCloses.items.count == 1)
        }
    }

    @Test("connecting to a closed port fails with .unreachable naming the address")
    func unreachable() async throws {
        try await withTransport { transport, _ in
            // A port bound by a socket that never listens (and stays bound for the test, so no
            // test running in parallel can take it): connects to it are refused.
            let port = try #require(RefusingPort())
            defer { port.close() }
            let address = port.address
            do throws(TransportError) {
                _ = try await transport.connect(to: address)
                Issue.record("connect to a closed port succeeded")
            } catch {
                guard case .unreachable(let a, let why) = error else {
                    Issue.record("expected .unreachable, got \(error)")
                    return
                }
                #expect(a == address)
                #expect(why.contains("ECONNREFUSED"), "\(why)")
                #expect(error.description.contains(address.description))
            }
        }
    }

    @Test("a missing Unix socket and an inproc address are refused with typed errors")
    func badAddresses() async throws {
        try await withTransport { transport, _ in
            let missing = Address.unix(path: temporarySocketPath())
            await #expect(throws: TransportError.self) { try await transport.connect(to: missing) }
            let inproc = Address.inproc(name: "x")
            await #expect(throws: TransportError.unsupportedAddress(inproc, transport: "TCP")) {
                try await transport.connect(to: inproc)
            }
            let listener = try await transport.listen(on: Self.localhost) { _ in }
            await #expect(throws: TransportError.self) {
                _ = try await transport.listen(on: listener.address) { _ in }
            }
        }
    }

    @Test("shutdown closes every listener and connection and leaves no open handles")
    func shutdownLeavesNothing() async throws {
        let loop = try EventLoop(name: "tcp-shutdown")
        let transport = TCPTransport(loop: loop)
        let serverCloses = Collector<CloseReason>()
        let listener = try await listenEcho(transport, closes: serverCloses)
        var clients: [(any TransportConnection, Collector<Envelope>, Collector<CloseReason>)] = []
        for i in 0..<3 {
            let c = try await transport.connect(to: listener.address)
            let (received, closes) = collect(c)
            try c.send(envelope(i))
            try await received.first("echo \(i)")
            clients.append((c, received, closes))
        }
        await transport.shutdown()
        for (c, _, closes) in clients {
            #expect(try await closes.first("client close") == .transportShutdown)
            #expect(throws: TransportError.closed(.transportShutdown)) { try c.send(envelope(9)) }
        }
        #expect(try await serverCloses.wait(count: 3, "server closes").allSatisfy { $0 == .transportShutdown })
        #expect(await loop.openHandleCount == 0)
        await #expect(throws: TransportError.self) { try await transport.connect(to: listener.address) }
        await loop.shutdown()
    }

    @Test("a transport that owns its loops stops them on shutdown")
    func ownedLoops() async throws {
        let transport = try TCPTransport(loopCount: 2)
        let listener = try await listenEcho(transport)
        let conn = try await transport.connect(to: listener.address)
        let (received, closes) = collect(conn)
        try conn.send(envelope(1))
        try await received.first("the echo")
        await transport.shutdown()
        #expect(try await closes.first("the close") == .transportShutdown)
    }

    @Test("connect to a server that never sends its preamble times out with a typed error")
    func silentServerTimesOut() async throws {
        var config = TCPTransport.Configuration()
        config.handshakeTimeout = .milliseconds(200)
        try await withTransport(config) { transport, loop in
            let accepted = Collector<StreamChannel>()
            let silent = try await StreamListener.listen(on: loop, address: Self.localhost) { accepted.append($0) }
            do throws(TransportError) {
                _ = try await transport.connect(to: silent.address)
                Issue.record("connect to a silent server succeeded")
            } catch {
                guard case .closed(let reason) = error else {
                    Issue.record("expected .closed, got \(error)")
                    return
                }
                #expect(reason.isProtocolViolation(containing: "timed out"), "\(reason)")
                #expect(reason.isProtocolViolation(containing: "the peer's preamble"), "\(reason)")
            }
            let peer = try await accepted.first("the silent server's accept")
            let closed = Collector<Bool>()
            peer.start(onRead: { _ in }, onClose: { _ in closed.append(true) })
            try await closed.first("the abandoned server side to see the close")
            silent.close()
        }
    }

    @Test("shutdown during a handshake fails the pending connect with .transportShutdown")
    func shutdownDuringHandshake() async throws {
        try await withLoop { loop in
            let transport = TCPTransport(loop: loop)
            let accepted = Collector<StreamChannel>()
            let silent = try await StreamListener.listen(on: loop, address: Self.localhost) { accepted.append($0) }
            let attempt = Task { () throws(TransportError) -> any TransportConnection in
                try await transport.connect(to: silent.address)
            }
            let peer = try await accepted.first("the connection to reach the server")
            await transport.shutdown()
            let result = await attempt.result
            #expect(throws: TransportError.closed(.transportShutdown)) { try result.get() }
            peer.close()
            silent.close()
        }
    }

    @Test("waitUntilWritable bounds what a fast sender queues while the peer does not read")
    func backpressure() async throws {
        var config = TCPTransport.Configuration()
        config.highWatermark = 64 << 10
        config.lowWatermark = 16 << 10
        config.maxBufferedBeforeStart = 16
        try await withTransport(config) { transport, _ in
            let accepted = Collector<any TransportConnection>()
            let listener = try await transport.listen(on: Self.localhost) { accepted.append($0) }
            let client = try await transport.connect(to: listener.address)
            let server = try await accepted.first("the accepted connection")
            let payload = [UInt8](repeating: 0xEE, count: 16 << 10)
            let count = 1_000   // 16 MB: far more than the socket buffers hold
            let progress = Collector<Int>()
            let producer = Task {
                var maxQueued = 0
                for i in 0..<count {
                    try await client.waitUntilWritable()
                    try client.send(envelope(i, payload: payload))
                    maxQueued = max(maxQueued, (client as! TCPConnection).queuedByteCount)
                    progress.append(i)
                }
                return maxQueued
            }
            // The server starts only after 20 sends (320 KB, which the watermark and the socket
            // buffers absorb): meanwhile it buffers 16 envelopes and stops reading its socket.
            try await progress.wait(count: 20, "the first sends")
            let (received, _) = collect(server)
            let got = try await received.wait(count: count, timeout: .seconds(30), "envelopes under backpressure")
            let maxQueued = try await producer.value
            #expect(got.map(\.sequence) == (0..<count).map(UInt64.init))
            let frame = FrameEncoder.frameSize(of: envelope(0, payload: payload))
            #expect(maxQueued <= 2 * (64 << 10) + frame, "queued \(maxQueued) bytes")
        }
    }

    @Test("envelopes held before start are capped in bytes: the socket stops being read")
    func preStartBufferIsCappedInBytes() async throws {
        var config = TCPTransport.Configuration()
        config.highWatermark = 256 << 10
        config.lowWatermark = 64 << 10
        config.maxBufferedBytesBeforeStart = 1 << 20
        try await withTransport(config) { transport, _ in
            let accepted = Collector<any TransportConnection>()
            let listener = try await transport.listen(on: Self.localhost) { accepted.append($0) }
            let client = try await transport.connect(to: listener.address)
            let server = try await accepted.first("the accepted connection") as! TCPConnection
            let payload = [UInt8](repeating: 0x5A, count: 64 << 10)
            let count = 400   // 25 MB: far beyond the cap plus every socket buffer
            let sent = Collector<Int>()
            let producer = Task {
                for i in 0..<count {
                    try await client.waitUntilWritable()
                    try client.send(envelope(i, payload: payload))
                    sent.append(i)
                }
            }
            // The producer stalls once the unstarted server stops reading; its buffer is then
            // at most the cap plus what one read and one frame add.
            var stalledAt = -1
            while stalledAt != sent.items.count {
                stalledAt = sent.items.count
                _ = try? await sent.wait(count: stalledAt + 1, timeout: .milliseconds(500))
            }
            #expect(stalledAt < count, "the sender never stalled: the server read everything")
            let held = await server.bufferedBytesBeforeStart()
            #expect(held >= 1 << 20 && held <= (1 << 20) + (64 << 10) + (128 << 10), "held \(held) bytes")
            let (received, _) = collect(server)
            let got = try await received.wait(count: count, timeout: .seconds(60), "every envelope once started")
            try await producer.value
            #expect(got.map(\.sequence) == (0..<count).map(UInt64.init))
        }
    }

    @Test("a wildcard listener advertises a dialable address, or the configured one")
    func advertisedAddresses() async throws {
        var config = TCPTransport.Configuration()
        config.clusterKey = ClusterKey.random()       // beyond loopback needs a key
        try await withTransport(config) { transport, _ in
            let listener = try await listenEcho(transport, on: .tcp(host: "0.0.0.0", port: 0))
            guard case .tcp(let host, let port) = listener.address else { Issue.record("not tcp"); return }
            #expect(host != "0.0.0.0" && port != 0, "advertised \(listener.address)")
            let conn = try await transport.connect(to: listener.address)
            let (received, _) = collect(conn)
            try conn.send(envelope(1))
            #expect(try await received.first("an echo through the advertised address") == envelope(1))
            listener.close()
        }
        config.advertisedAddress = .tcp(host: "spindle.example", port: 0)
        try await withTransport(config) { transport, _ in
            let listener = try await listenEcho(transport, on: .tcp(host: "0.0.0.0", port: 0))
            let bound = (listener as! TCPListener).boundAddress
            guard case .tcp(_, let port) = bound else { Issue.record("not tcp"); return }
            #expect(listener.address == .tcp(host: "spindle.example", port: port))
            listener.close()
        }
        // Without a key, a wildcard is beyond loopback: refused.
        _ = try await withTransport { transport, _ in
            await #expect(throws: TransportError.self) { _ = try await listenEcho(transport, on: .tcp(host: "0.0.0.0", port: 0)) }
        }
    }

    @Test("closing a connection tells both handlers, locally and as closed by the peer")
    func closeReasons() async throws {
        try await withTransport { transport, _ in
            let serverCloses = Collector<CloseReason>()
            let listener = try await listenEcho(transport, closes: serverCloses)
            let conn = try await transport.connect(to: listener.address)
            let (received, closes) = collect(conn)
            try conn.send(envelope(1))
            try await received.first("the echo")
            conn.close()
            #expect(try await closes.first("the local close") == .closedLocally)
            #expect(try await serverCloses.first("the peer close") == .closedByPeer)
            #expect(throws: TransportError.closed(.closedLocally)) { try conn.send(envelope(2)) }
        }
    }
}

/// A raw socket peer that speaks whatever bytes a test writes.
struct RawPeer {
    let channel: StreamChannel
    let received: Collector<[UInt8]>
    let closed: Collector<String>

    static func connect(loop: EventLoop, to address: Address) async throws -> RawPeer {
        let channel = try await StreamChannel.connect(on: loop, to: address)
        let received = Collector<[UInt8]>(), closed = Collector<String>()
        channel.start(onRead: { received.append(Array($0)) },
                      onClose: { closed.append($0?.description ?? "EOF") })
        return RawPeer(channel: channel, received: received, closed: closed)
    }
}

extension CloseReason {
    func isProtocolViolation(containing text: String) -> Bool {
        if case .protocolViolation(let s) = self { return s.contains(text) }
        return false
    }

    func isAuthenticationFailure(containing text: String) -> Bool {
        if case .authenticationFailed(let s) = self { return s.contains(text) }
        return false
    }
}

