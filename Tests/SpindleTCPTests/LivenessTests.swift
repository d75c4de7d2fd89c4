import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

/// Reliable links over TCP notice a dead peer: one that stops (SIGSTOP), one whose traffic
/// vanishes, one that restarts. (The exact timing is checked on a ManualClock in
/// ReliableLinkCoreTests; here the point is that real sockets get there.)
@Suite("Liveness", .timeLimit(.minutes(2)))
struct LivenessTests {
    /// A short bound, so the tests take seconds (long enough that a loaded machine running
    /// the whole suite in parallel does not trip it during set-up).
    static let bound: Duration = .seconds(3)
    static func shortBound() -> ReliableLink.Configuration {
        var c = ReliableLink.Configuration()
        c.core.heartbeatInterval = .milliseconds(200)
        c.core.livenessBound = bound
        c.core.connectTimeout = bound
        return c
    }

    /// What one link's handler saw.
    final class Observed: Sendable {
        let delivered = Collector<Envelope>()
        let returned = Collector<([Envelope], UndeliverableReason)>()
        let events = Collector<ReliableLinkEvent>()

        var handler: ReliableLink.Handler {
            .init(onDeliver: { self.delivered.append($0) },
                  onUndeliverable: { self.returned.append(($0, $1)) },
                  onEvent: { self.events.append($0) })
        }

        /// Waits for the first completed handshake. (On a loaded machine the first connect may
        /// take longer than the short liveness bound: the link declares the peer lost, keeps
        /// trying, and the test starts once it is through.)
        func waitForConnection() async throws {
            let deadline = SystemClock().now() + .seconds(30)
            while !events.items.contains(where: { if case .connected = $0 { return true } else { return false } }) {
                guard SystemClock().now() < deadline else { throw TestTimeout(what: "the first handshake") }
                _ = try? await events.wait(count: events.items.count + 1, timeout: .milliseconds(200))
            }
        }

        /// The loss that comes after the connection (events before it are set-up noise).
        func waitForLoss() async throws -> (String, [([Envelope], UndeliverableReason)]) {
            let deadline = SystemClock().now() + .seconds(20)
            while SystemClock().now() < deadline {
                let all = events.items
                let start = all.firstIndex { if case .connected = $0 { return true } else { return false } } ?? all.endIndex
                if let lost = all[start...].compactMap({ e -> String? in
                    if case .peerLost(let why) = e { return why } else { return nil }
                }).first {
                    return (lost, returned.items)
                }
                _ = try? await events.wait(count: events.items.count + 1, timeout: .milliseconds(200))
            }
            throw TestTimeout(what: "the peer to be declared lost")
        }
    }

    @Test("a stopped peer process (SIGSTOP) is declared lost and pending messages come back")
    func stoppedPeer() async throws {
        let fixture = try #require(reliablePeerFixture(), "ReliablePeerFixture not built next to the test binary")
        try await withLoop { loop in
            var options = ProcessOptions(executable: fixture)
            options.stderr = .inherit
            let child = try await ChildProcess.spawn(on: loop, options)
            let lines = Collector<String>()
            child.stdout?.start(onRead: { bytes in
                for line in String(decoding: Array(bytes), as: UTF8.self).split(separator: "\n") { lines.append(String(line)) }
            }, onClose: { _ in })
            let first = try await lines.first("the fixture's listen address")
            let address = try Address(parsing: String(first.dropFirst("listening ".count)))

            let transport = TCPTransport(loop: loop)
            let seen = Observed()
            let link = ReliableLink.connect(over: transport, to: address, configuration: Self.shortBound(),
                                            handler: seen.handler)
            try await seen.waitForConnection()
            try link.send(envelope(1))
            #expect(try await seen.delivered.first("the echo before the stop").correlation == 1)
            try await waitUntilAcknowledged(link)

            // Only what the stop returns counts (a starved suite can cause a loss before it).
            let returnedBefore = seen.returned.items.count
            try child.kill(SIGSTOP)
            for i in 2...4 { try link.send(envelope(i)) }
            let (why, returned) = try await seen.waitForLoss()
            #expect(why.contains("nothing heard from the peer"))
            try await seen.returned.wait(count: returnedBefore + 1, "the pending messages back")
            let back = seen.returned.items.dropFirst(returnedBefore).flatMap(\.0).map(\.correlation)
            #expect(back == [2, 3, 4], "returned \(returned)")
            #expect(seen.returned.items.allSatisfy { $0.1 == .peerUnresponsive(after: Self.bound) })

            try child.kill(SIGCONT)
            await link.shutdown()
            child.stdin?.close()
            _ = await child.wait()
            await transport.shutdown()
        }
    }

    @Test("a peer whose traffic is dropped is declared lost and pending messages come back")
    func droppedTraffic() async throws {
        try await withLoop { loop in
            let transport = TCPTransport(loop: loop)
            let listener = try await ReliableListener.listen(over: transport, on: .tcp(host: "127.0.0.1", port: 0),
                                                             configuration: Self.shortBound()) { link in
                ReliableLink.Handler(onDeliver: { try? link.send($0) }, onUndeliverable: { _, _ in })
            }
            let relay = try await ByteRelay.start(on: loop, upstream: listener.address)
            let seen = Observed()
            let link = ReliableLink.connect(over: transport, to: relay.address, configuration: Self.shortBound(),
                                            handler: seen.handler)
            try await seen.waitForConnection()
            try link.send(envelope(1))
            try await seen.delivered.first("the echo before the partition")
            try await waitUntilAcknowledged(link)
            // A suite that starves this process for longer than the bound can make the link
            // declare a loss before the partition too; only what the partition returns counts.
            let returnedBefore = seen.returned.items.count
            relay.dropEverything()
            for i in 2...5 { try link.send(envelope(i)) }
            _ = try await seen.waitForLoss()
            try await seen.returned.wait(count: returnedBefore + 1, "the pending messages back")
            #expect(seen.returned.items.dropFirst(returnedBefore).flatMap(\.0).map(\.correlation) == [2, 3, 4, 5])
            #expect(link.isPeerLost)
            relay.close()
            await link.shutdown()
            await listener.shutdown()
            await transport.shutdown()
        }
    }

    @Test("10 000 messages each way across an acceptor restart: each delivered once or returned, counts add up")
    func acceptorRestart() async throws {
        try await withLoop { loop in
            let transport = TCPTransport(loop: loop)
            let total = 10_000
            let atServer = Collector<Envelope>()
            let returnedAtServer = Collector<Envelope>()
            let serverLinks = Collector<ReliableLink>()
            func listen(on address: Address) async throws -> ReliableListener {
                try await ReliableListener.listen(over: transport, on: address) { link in
                    serverLinks.append(link)
                    return ReliableLink.Handler(onDeliver: { atServer.append($0) },
                                                onUndeliverable: { es, _ in for e in es { returnedAtServer.append(e) } })
                }
            }
            var listener = try await listen(on: .tcp(host: "127.0.0.1", port: 0))
            let address = listener.address
            let seen = Observed()
            let link = ReliableLink.connect(over: transport, to: address, handler: seen.handler)

            // Client → server: all 10 000 accepted by the client link; server → client: sent on
            // whichever server link is current, retried when the old one refuses (closing).
            var serverSent = 0
            func serverSend(upTo n: Int) async throws {
                while serverSent < n {
                    guard let current = serverLinks.items.last else { try await Task.sleep(for: .milliseconds(1)); continue }
                    do {
                        try current.send(envelope(serverSent))
                        serverSent += 1
                    } catch {
                        try await Task.sleep(for: .milliseconds(1))   // closing: the next link takes it
                    }
                }
            }
            for i in 0..<(total / 2) {
                try link.send(envelope(i))
                if i % 256 == 0 { try await link.waitUntilWritable() }
            }
            try await serverLinks.first("the first session")
            try await serverSend(upTo: total / 2)

            // Restart the acceptor on the same address while messages are in flight.
            await listener.shutdown()
            listener = try await listen(on: address)
            for i in (total / 2)..<total {
                try link.send(envelope(i))
                if i % 256 == 0 { try await link.waitUntilWritable() }
            }
            try await serverLinks.wait(count: 2, "the second session")
            try await serverSend(upTo: total)

            // Everything settles: each message delivered or returned.
            let deadline = SystemClock().now() + .seconds(60)
            func settled() -> Bool {
                atServer.items.count + seen.returned.items.flatMap(\.0).count >= total
                    && seen.delivered.items.count + returnedAtServer.items.count >= total
            }
            while !settled() && SystemClock().now() < deadline { try await Task.sleep(for: .milliseconds(20)) }

            let delivered = atServer.items.map(\.correlation)
            let returned = seen.returned.items.flatMap(\.0).map(\.correlation)
            #expect(Set(delivered).count == delivered.count, "a client message was delivered twice")
            #expect(Set(delivered).isDisjoint(with: returned), "a message was both delivered and returned")
            #expect(delivered.count + returned.count == total)
            #expect(Set(delivered).union(returned) == Set((0..<total).map(UInt64.init)))
            let back = seen.delivered.items.map(\.correlation)
            let refused = returnedAtServer.items.map(\.correlation)
            #expect(Set(back).count == back.count, "a server message was delivered twice")
            #expect(Set(back).isDisjoint(with: refused))
            #expect(back.count + refused.count == total)
            #expect(seen.events.items.contains(.peerClosed), "the client was told the first session ended")

            await link.shutdown()
            await listener.shutdown()
            await transport.shutdown()
        }
    }
}

/// Waits until the peer has acknowledged everything `link` sent (its delayed ack arrived).
func waitUntilAcknowledged(_ link: ReliableLink, timeout: Duration = .seconds(10)) async throws {
    let deadline = SystemClock().now() + timeout
    while link.queuedCount > 0 {
        guard SystemClock().now() < deadline else { throw TestTimeout(what: "the peer's acknowledgement") }
        try await Task.sleep(for: .milliseconds(1))
    }
}

/// The `ReliablePeerFixture` executable beside the test binary, if built.
func reliablePeerFixture() -> String? {
    guard let raw = CommandLine.arguments.first else { return nil }
    var dir = raw.hasPrefix("/") ? raw : (String(cString: getcwd(nil, 0)) + "/" + raw)
    for _ in 0..<4 {
        guard let slash = dir.lastIndex(of: "/") else { break }
        dir = String(dir[..<slash])
        let candidate = dir + "/ReliablePeerFixture"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
