import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

/// Socket-level liveness (issue 15): keepalive and TCP_USER_TIMEOUT on every TCP connection,
/// the connect timeout, the graceful-close deadline; and accepted connections spread over a
/// transport's loops.
@Suite("Socket liveness")
struct SocketLivenessTests {
    static let localhost = Address.tcp(host: "127.0.0.1", port: 0)

    /// The liveness options of a connection's socket, read back with getsockopt on its loop.
    struct SocketOptions: Equatable, CustomStringConvertible {
        var keepalive, idle, interval, count, userTimeoutMilliseconds: Int32
        var description: String {
            "SO_KEEPALIVE=\(keepalive) TCP_KEEPIDLE=\(idle) TCP_KEEPINTVL=\(interval) TCP_KEEPCNT=\(count) TCP_USER_TIMEOUT=\(userTimeoutMilliseconds)"
        }
    }

    static func socketOptions(_ conn: any TransportConnection) async throws -> SocketOptions {
        let channel = (conn as! TCPConnection).channel
        return try await channel.loop.submit {
            guard let fd = channel.fileDescriptor else { throw TestTimeout(what: "an open socket") }
            func get(_ level: Int32, _ name: Int32) -> Int32 {
                var value: Int32 = -1
                var length = socklen_t(MemoryLayout<Int32>.size)
                return getsockopt(fd, level, name, &value, &length) == 0 ? value : -1
            }
            let tcp = Int32(IPPROTO_TCP)
            return SocketOptions(keepalive: get(SOL_SOCKET, SO_KEEPALIVE), idle: get(tcp, TCP_KEEPIDLE),
                                 interval: get(tcp, TCP_KEEPINTVL), count: get(tcp, TCP_KEEPCNT),
                                 userTimeoutMilliseconds: get(tcp, TCP_USER_TIMEOUT))
        }
    }

    enum Settings: String, CaseIterable, Sendable {
        case defaults, custom

        var configuration: TCPTransport.Configuration {
            var c = TCPTransport.Configuration()
            if self == .custom {
                c.keepalive = .init(idle: .seconds(7), interval: .milliseconds(2500), probeCount: 5)
                c.userTimeout = .milliseconds(2500)
            }
            return c
        }

        var expected: SocketOptions {
            switch self {
            case .defaults: SocketOptions(keepalive: 1, idle: 2, interval: 1, count: 3, userTimeoutMilliseconds: 10_000)
            case .custom: SocketOptions(keepalive: 1, idle: 7, interval: 3, count: 5, userTimeoutMilliseconds: 2500)
            }
        }
    }

    @Test("keepalive and TCP_USER_TIMEOUT are set on accepted and connected sockets", arguments: Settings.allCases)
    func keepaliveAndUserTimeoutAreSet(_ settings: Settings) async throws {
        try await withTransport(settings.configuration) { transport, _ in
            let accepted = Collector<any TransportConnection>()
            let listener = try await transport.listen(on: Self.localhost) { conn in
                conn.start(ConnectionHandler(onEnvelope: { _ in }, onClose: { _ in }))
                accepted.append(conn)
            }
            let client = try await transport.connect(to: listener.address)
            let server = try await accepted.first("the accepted connection")
            #expect(try await Self.socketOptions(client) == settings.expected, "connected socket")
            #expect(try await Self.socketOptions(server) == settings.expected, "accepted socket")
        }
    }

    @Test("settings of nil leave keepalive off and TCP_USER_TIMEOUT at the system's 0")
    func disabledSettingsLeaveTheSystemDefaults() async throws {
        var configuration = TCPTransport.Configuration()
        configuration.keepalive = nil
        configuration.userTimeout = nil
        try await withTransport(configuration) { transport, _ in
            let listener = try await listenEcho(transport)
            let client = try await transport.connect(to: listener.address)
            let options = try await Self.socketOptions(client)
            #expect(options.keepalive == 0)
            #expect(options.userTimeoutMilliseconds == 0)
        }
    }

    // MARK: connect timeout

    /// A 127.0.0.1 listener that never accepts, its one-slot backlog taken by a connection of
    /// its own: the kernel drops further SYNs, so a connect to it never completes.
    final class FullBacklogListener: Sendable {
        let listenFD: Int32
        let fillerFD: Int32
        let address: Address

        init() throws {
            func fail(_ what: String) -> TestTimeout { TestTimeout(what: "\(what) (errno \(errno))") }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw fail("a socket") }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 && listen(fd, 0) == 0
                }
            }
            guard bound else { _ = Glibc.close(fd); throw fail("a listening socket") }
            // Backlog 0 holds one connection: take it with a blocking connect, which the
            // kernel completes without an accept.
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let connected = filler >= 0 && withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, length) == 0 }
            }
            guard connected else {
                if filler >= 0 { _ = Glibc.close(filler) }
                _ = Glibc.close(fd)
                throw fail("the backlog filler")
            }
            listenFD = fd
            fillerFD = filler
            address = .tcp(host: "127.0.0.1", port: UInt16(bigEndian: addr.sin_port))
        }

        func close() {
            _ = Glibc.close(fillerFD)
            _ = Glibc.close(listenFD)
        }
    }

    @Test("a connect that does not complete fails after the connect timeout, naming the address, and leaves no handle")
    func connectTimeoutFires() async throws {
        let silent = try FullBacklogListener()
        defer { silent.close() }
        var configuration = TCPTransport.Configuration()
        configuration.connectTimeout = .milliseconds(300)
        // withTransport checks that the loop has no handle left afterwards.
        try await withTransport(configuration) { transport, loop in
            let started = ContinuousClock.now
            let attempt: Result<any TransportConnection, TransportError>? = await withTimeoutResult(10, "connect") {
                do throws(TransportError) { return .success(try await transport.connect(to: silent.address)) }
                catch { return .failure(error) }
            }
            guard let outcome = attempt else {
                Issue.record("connect still pending after 10 s: the connect timeout did not fire")
                return
            }
            let elapsed = ContinuousClock.now - started
            guard case .failure(.unreachable(let address, let reason)) = outcome else {
                Issue.record("expected .unreachable, got \(outcome)")
                return
            }
            #expect(address == silent.address)
            #expect(reason.contains("connect to \(silent.address)"), "\(reason)")
            #expect(reason.contains("ETIMEDOUT") && reason.contains("0.3 seconds"), "\(reason)")
            // Not early; "not much later" is the 10 s bound above (the kernel alone would retry
            // the SYN for minutes), kept loose for a loaded machine.
            #expect(elapsed >= .milliseconds(300), "took \(elapsed)")
            #expect(await openHandlesAfterSettling(loop) == 0, "the abandoned connect left a handle")
        }
    }

    @Test("StreamChannel.connect: the timeout is a typed ETIMEDOUT")
    func streamConnectTimeoutIsTyped() async throws {
        let silent = try FullBacklogListener()
        defer { silent.close() }
        try await withLoop { loop in
            var configuration = StreamConfiguration()
            configuration.connectTimeout = .milliseconds(200)
            do throws(EventLoopError) {
                let channel = try await StreamChannel.connect(on: loop, to: silent.address, configuration: configuration)
                channel.close()
                Issue.record("connected to a listener whose backlog is full")
            } catch {
                #expect(error == .timedOut && error.isTimedOut, "\(error)")
                #expect(error.operation == "connect to \(silent.address)")
            }
        }
    }

    // MARK: close deadline

    @Test("a graceful close to a peer that never reads ends at the close deadline with the unwritten byte count")
    func closeDeadlineFires() async throws {
        try await withLoop { loop in
            let held = Mutex<[StreamChannel]>([])
            // The accepted side is never started: it never reads.
            let listener = try await StreamListener.listen(on: loop, address: Self.localhost) { channel in
                held.withLock { $0.append(channel) }
            }
            var configuration = StreamConfiguration()
            configuration.closeDeadline = .milliseconds(300)
            let client = try await StreamChannel.connect(on: loop, to: listener.address, configuration: configuration)
            let closed = Collector<EventLoopError?>()
            client.start(onRead: { _ in }, onClose: { closed.append($0) })
            // More than both socket buffers take: a receiver that never reads does not grow its
            // buffer, so about a MiB gets through on loopback.
            client.write([UInt8](repeating: 0x5A, count: 16 << 20))
            client.close()
            let error = try await closed.first(timeout: .seconds(10), "the close")
            let reason = try #require(error, "a close that had bytes unwritten reported no error")
            #expect(reason == .closeDeadlinePassed && reason.isCloseDeadlinePassed, "\(reason)")
            #expect(reason.message.contains("0.3 seconds"), "\(reason)")
            let unwritten = reason.message.split(separator: " ").firstIndex(of: "bytes").map {
                Int(reason.message.split(separator: " ")[$0 - 1]) ?? 0
            } ?? 0
            #expect(unwritten > 0 && unwritten < 16 << 20, "\(reason)")
            listener.close()
            for channel in held.withLock({ $0 }) { channel.close() }
        }
    }

    @Test("transport shutdown with a peer that never reads finishes by the close deadline")
    func transportShutdownBoundedByCloseDeadline() async throws {
        try await withLoop { loop in
            var serverConfiguration = TCPTransport.Configuration()
            serverConfiguration.maxBufferedBeforeStart = 1   // stops reading at once, never started
            let server = TCPTransport(loop: loop, configuration: serverConfiguration)
            var clientConfiguration = TCPTransport.Configuration()
            clientConfiguration.closeDeadline = .milliseconds(300)
            let client = TCPTransport(loop: loop, configuration: clientConfiguration)
            do {
                let held = Collector<any TransportConnection>()
                let listener = try await server.listen(on: Self.localhost) { held.append($0) }
                let conn = try await client.connect(to: listener.address)
                let payload = [UInt8](repeating: 1, count: 1 << 20)
                for i in 0..<16 { try conn.send(envelope(i, payload: payload)) }
                try await withTimeout(.seconds(10), "client shutdown") { await client.shutdown() }
                await server.shutdown()
            } catch {
                await client.shutdown()
                await server.shutdown()
                throw error
            }
        }
    }

    // MARK: accepted connections over a group

    @Test("a transport on a 2-loop group accepts connections on both loops")
    func acceptedConnectionsSpreadOverLoops() async throws {
        let group = try EventLoopGroup(loopCount: 2, namePrefix: "tcp-spread")
        let server = TCPTransport(group: group)
        let client = try TCPTransport(loopCount: 1)
        let acceptedLoops = Collector<String>()
        do {
            let listener = try await server.listen(on: Self.localhost) { conn in
                acceptedLoops.append((conn as! TCPConnection).loop.name)
                conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
            }
            for i in 0..<4 {
                let conn = try await client.connect(to: listener.address)
                let (received, _) = collect(conn)
                try conn.send(envelope(i))
                #expect(try await received.first("echo \(i)").sequence == UInt64(i))
            }
            let loops = try await acceptedLoops.wait(count: 4, "accepted connections")
            #expect(Set(loops) == ["tcp-spread-0", "tcp-spread-1"], "accepted on \(loops)")
        } catch {
            await client.shutdown()
            await server.shutdown()
            await group.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
        for loop in group.loops { #expect(await openHandlesAfterSettling(loop) == 0) }
        await group.shutdown()
    }
}

/// Runs `body`, or gives up after `seconds` (a deadline that fails the test, not a wait).
func withTimeout<T: Sendable>(_ timeout: Duration, _ what: String,
                              _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TestTimeout(what: what) }
        return value
    }
}

/// `withTimeout` for a body that returns a `Result` (whose failure types need not be Sendable-erased).
func withTimeoutResult<T: Sendable>(_ seconds: Int, _ what: String,
                                    _ body: @escaping @Sendable () async -> T) async -> T? {
    try? await withTimeout(.seconds(seconds), what) { await body() }
}
