import NetworkTestSupport
import Foundation
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing

@Suite("Streams")
struct StreamTests {
    /// Starts an echo server on `address`; returns the listener.
    static func echoServer(on loop: EventLoop, _ address: Address) async throws -> StreamListener {
        try await StreamListener.listen(on: loop, address: address) { channel in
            channel.start(onRead: { chunk in channel.write(Array(chunk)) }, onClose: { _ in channel.close() })
        }
    }

    /// Sends `payload` through an echo server at `address` in uneven writes and checks the echo.
    static func roundTrip(_ loop: EventLoop, _ address: Address, payload: [UInt8]) async throws -> ByteSink {
        let client = try await StreamChannel.connect(on: loop, to: address)
        let sink = ByteSink()
        sink.start(client)
        var offset = 0, step = 1
        while offset < payload.count {
            let end = min(payload.count, offset + step)
            client.write(Array(payload[offset..<end]))
            offset = end
            step = step * 3 + 7
        }
        try await sink.wait(for: payload.count)
        #expect(sink.bytes == payload)
        client.close()
        #expect(try await sink.closed.wait(10, "client close") == nil)
        return sink
    }

    @Test("TCP echo on 127.0.0.1:0 with partial reads")
    func tcpEcho() async throws {
        try await withLoop { loop in
            let listener = try await Self.echoServer(on: loop, .tcp(host: "127.0.0.1", port: 0))
            guard case .tcp(let host, let port) = listener.address else { Issue.record("not tcp"); return }
            #expect(host == "127.0.0.1")
            #expect(port != 0)
            let payload = pattern(1 << 20)
            let sink = try await Self.roundTrip(loop, listener.address, payload: payload)
            // 1 MiB cannot arrive in one 64 KiB read: the reader saw partial chunks.
            #expect(sink.chunkCount > 1)
            listener.close()
        }
    }

    @Test("TCP over IPv6 loopback reports addresses")
    func tcpIPv6() async throws {
        try await withLoop { loop in
            let listener: StreamListener
            do {
                listener = try await Self.echoServer(on: loop, .tcp(host: "::1", port: 0))
            } catch let error as EventLoopError where error.name == "EADDRNOTAVAIL" || error.name == "EAFNOSUPPORT" {
                return  // no IPv6 on this machine
            }
            let client = try await StreamChannel.connect(on: loop, to: listener.address)
            #expect(client.remoteAddress == listener.address)
            if case .tcp(let host, _)? = client.localAddress { #expect(host == "::1") } else { Issue.record("no local address") }
            let sink = ByteSink()
            sink.start(client)
            client.write([1, 2, 3])
            try await sink.wait(for: 3)
            #expect(sink.bytes == [1, 2, 3])
            client.close()
            listener.close()
        }
    }

    @Test("connect by host name resolves it")
    func connectByName() async throws {
        try await withLoop { loop in
            let listener = try await Self.echoServer(on: loop, .tcp(host: "127.0.0.1", port: 0))
            guard case .tcp(_, let port) = listener.address else { return }
            _ = try await Self.roundTrip(loop, .tcp(host: "localhost", port: port), payload: pattern(1000))
            listener.close()
        }
    }

    @Test("Unix-domain socket echo; the socket file is removed on close")
    func unixEcho() async throws {
        try await withTemporaryDirectory { dir in
            try await withLoop { loop in
                let path = dir + "/echo.sock"
                let listener = try await Self.echoServer(on: loop, .unix(path: path))
                #expect(FileManager.default.fileExists(atPath: path))
                _ = try await Self.roundTrip(loop, .unix(path: path), payload: pattern(300_000, seed: 9))
                listener.close()
                await loop.settle()
                #expect(!FileManager.default.fileExists(atPath: path))
            }
        }
    }

    @Test("connecting to a closed port fails with ECONNREFUSED by name")
    func connectionRefused() async throws {
        try await withLoop { loop in
            // A bound socket that never listens: refused, and no parallel test can take the port.
            let port = try #require(RefusingPort())
            defer { port.close() }
            let address = port.address
            do {
                _ = try await StreamChannel.connect(on: loop, to: address)
                Issue.record("connect succeeded")
            } catch let error as EventLoopError {
                #expect(error.isConnectionRefused)
                #expect(error.name == "ECONNREFUSED")
                #expect(error.description.contains("connect to \(address)"))
            }
        }
    }

    @Test("bad addresses give typed errors")
    func badAddresses() async throws {
        try await withLoop { loop in
            await #expect(throws: EventLoopError.self) {
                _ = try await StreamChannel.connect(on: loop, to: .inproc(name: "x"))
            }
            do {
                _ = try await StreamChannel.connect(on: loop, to: .unix(path: "/nonexistent-dir/sock"))
                Issue.record("connected to a missing socket")
            } catch let error as EventLoopError {
                #expect(error.name == "ENOENT")
            }
        }
    }

    @Test("write backpressure: unwritable against a non-reading peer, writable once it reads")
    func backpressure() async throws {
        try await withLoop { loop in
            let accepted = Promise<StreamChannel>()
            let listener = try await StreamListener.listen(on: loop, address: .tcp(host: "127.0.0.1", port: 0)) {
                accepted.fulfil($0)  // not reading yet
            }
            let config = StreamConfiguration(highWatermark: 1 << 20, lowWatermark: 256 << 10)
            let client = try await StreamChannel.connect(on: loop, to: listener.address, configuration: config)
            let server = try await accepted.wait(10, "accept")
            #expect(client.isWritable)
            let chunk = pattern(64 << 10)
            let total = 16 << 20  // far more than loopback socket buffers hold
            for _ in 0..<(total / chunk.count) { client.write(chunk) }
            #expect(!client.isWritable)
            // Two loop turns later the flush has happened; the kernel cannot take 16 MiB.
            await loop.settle()
            #expect(!client.isWritable)
            #expect(client.queuedByteCount > config.highWatermark)

            let writable = Promise<Void>()
            let waiter = Task {
                try await client.waitUntilWritable()
                writable.fulfil(())
            }
            #expect(writable.value == nil)
            let sink = ByteSink()
            sink.start(server)
            try await writable.wait(20, "writable")
            try await waiter.value
            #expect(client.isWritable)
            try await sink.wait(for: total, 30)
            #expect(sink.bytes.count == total)
            client.close()
            #expect(try await sink.closed.wait(10, "EOF at server") == nil)
            listener.close()
        }
    }

    @Test("waitUntilWritable throws once the channel has closed")
    func waitAfterClose() async throws {
        try await withLoop { loop in
            let listener = try await Self.echoServer(on: loop, .tcp(host: "127.0.0.1", port: 0))
            let client = try await StreamChannel.connect(on: loop, to: listener.address)
            let sink = ByteSink()
            sink.start(client)
            client.close()
            _ = try await sink.closed.wait(10, "close")
            await #expect(throws: EventLoopError.self) { try await client.waitUntilWritable() }
            listener.close()
        }
    }

    @Test("writes from many threads arrive complete and in order per thread")
    func writesFromManyThreads() async throws {
        try await withLoop { loop in
            let accepted = Promise<StreamChannel>()
            let sink = ByteSink()
            let listener = try await StreamListener.listen(on: loop, address: .tcp(host: "127.0.0.1", port: 0)) { ch in
                sink.start(ch)
                accepted.fulfil(ch)
            }
            let client = try await StreamChannel.connect(on: loop, to: listener.address)
            let writers = 4, perWriter = 500
            await withTaskGroup(of: Void.self) { group in
                for w in 0..<writers {
                    group.addTask {
                        for i in 0..<perWriter { client.write([UInt8(w), UInt8(i & 0xff), UInt8(i >> 8)]) }
                    }
                }
            }
            try await sink.wait(for: writers * perWriter * 3)
            var next = Array(repeating: 0, count: writers)
            let bytes = sink.bytes
            for k in stride(from: 0, to: bytes.count, by: 3) {
                let w = Int(bytes[k]), i = Int(bytes[k + 1]) | Int(bytes[k + 2]) << 8
                #expect(i == next[w])
                next[w] += 1
            }
            #expect(next == Array(repeating: perWriter, count: writers))
            client.close()
            listener.close()
        }
    }
}
