import Testing
import Synchronization
import SpindleKernel
import SpindleSupport

@Suite struct InProcessTransportTests {
    /// A transport with one listener "server" and one accepted + one client end, both started.
    private func pair(_ transport: InProcessTransport, from name: String? = nil,
                      server: String = "server") async throws -> (client: any TransportConnection, clientGot: Received,
                                                                   serverConn: any TransportConnection, serverGot: Received) {
        let accepted = Locked<(any TransportConnection)?>(nil)
        let serverGot = Received()
        _ = try await transport.listen(on: .inproc(name: server)) { c in
            c.start(serverGot.handler)
            accepted.withLock { $0 = c }
        }
        let client = if let name { try await transport.connect(to: .inproc(name: server), from: name) }
                     else { try await transport.connect(to: .inproc(name: server)) }
        let clientGot = Received()
        client.start(clientGot.handler)
        let s = try #require(accepted.withLock { $0 })
        return (client, clientGot, s, serverGot)
    }

    @Test func fifoBothWaysAsynchronous() async throws {
        let t = InProcessTransport()
        let (client, clientGot, server, serverGot) = try await pair(t)
        #expect(client.remoteAddress == .inproc(name: "server"))
        #expect(server.localAddress == .inproc(name: "server"))
        for i in 1...10_000 { try client.send(envelope(UInt64(i))) }
        for i in 1...100 { try server.send(envelope(UInt64(i))) }
        try await waitUntil("10 000 envelopes") { serverGot.envelopes.count == 10_000 }
        try await waitUntil("100 replies") { clientGot.envelopes.count == 100 }
        #expect(serverGot.sequences == Array(1...10_000))
        #expect(clientGot.sequences == Array(1...100))
        await t.shutdown()
        #expect(serverGot.closes == [.transportShutdown] && clientGot.closes == [.transportShutdown])
    }

    @Test func payloadIsSharedNotCopied() async throws {
        let t = InProcessTransport(configuration: .init(delivery: .inline))
        let (client, _, _, serverGot) = try await pair(t)
        let payload = [UInt8](repeating: 7, count: 1 << 20)
        try client.send(envelope(1, payload: payload))
        let got = try #require(serverGot.envelopes.first)
        let same = payload.withUnsafeBufferPointer { a in got.payload.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress } }
        #expect(same)
        await t.shutdown()
    }

    @Test func handlerCallsNeverOverlap() async throws {
        let t = InProcessTransport()
        let (client, _, server, _) = try await pair(t)
        _ = server
        let inside = Locked(0)
        let overlaps = Locked(0)
        let count = Locked(0)
        // Replace nothing: a second connection with a checking handler.
        let checked = Locked<(any TransportConnection)?>(nil)
        _ = try await t.listen(on: .inproc(name: "checked")) { c in
            c.start(ConnectionHandler(onEnvelope: { _ in
                let now = inside.withLock { $0 += 1; return $0 }
                if now > 1 { overlaps.withLock { $0 += 1 } }
                count.withLock { $0 += 1 }
                inside.withLock { $0 -= 1 }
            }, onClose: { _ in }))
            checked.withLock { $0 = c }
        }
        let conn = try await t.connect(to: .inproc(name: "checked"))
        await withTaskGroup(of: Void.self) { g in
            for k in 0..<4 {
                g.addTask { for i in 0..<2_000 { try? conn.send(envelope(UInt64(k * 10_000 + i))) } }
            }
        }
        try await waitUntil("8 000 envelopes") { count.value == 8_000 }
        #expect(overlaps.value == 0)
        _ = client
        await t.shutdown()
    }

    @Test func addressErrors() async throws {
        let t = InProcessTransport()
        _ = try await t.listen(on: .inproc(name: "a")) { _ in }
        await #expect(throws: TransportError.cannotListen(.inproc(name: "a"), "\"a\" is already listened on")) {
            _ = try await t.listen(on: .inproc(name: "a")) { _ in }
        }
        do {
            _ = try await t.connect(to: .inproc(name: "nobody"))
            Issue.record("connected to nobody")
        } catch {
            #expect(error == .unreachable(.inproc(name: "nobody"), "no listener named \"nobody\""))
            #expect(error.description.contains("inproc://nobody"))
        }
        await #expect(throws: TransportError.unsupportedAddress(.tcp(host: "127.0.0.1", port: 1), transport: "in-process")) {
            _ = try await t.connect(to: .tcp(host: "127.0.0.1", port: 1))
        }
        await t.shutdown()
        await #expect(throws: TransportError.self) { _ = try await t.connect(to: .inproc(name: "a")) }
    }

    @Test func listenerCloseFreesTheName() async throws {
        let t = InProcessTransport()
        let l = try await t.listen(on: .inproc(name: "x")) { _ in }
        #expect(t.listenerNames == ["x"])
        l.close()
        await #expect(throws: TransportError.self) { _ = try await t.connect(to: .inproc(name: "x")) }
        _ = try await t.listen(on: .inproc(name: "x")) { _ in }
        await t.shutdown()
    }

    @Test func closeDeliversSentThenClosedByPeer() async throws {
        let t = InProcessTransport()
        let (client, clientGot, _, serverGot) = try await pair(t)
        for i in 1...50 { try client.send(envelope(UInt64(i))) }
        client.close()
        #expect(throws: TransportError.closed(.closedLocally)) { try client.send(envelope(99)) }
        try await waitUntil("peer close") { !serverGot.closes.isEmpty }
        try await waitUntil("local close") { !clientGot.closes.isEmpty }
        #expect(serverGot.sequences == Array(1...50))
        #expect(serverGot.closes == [.closedByPeer])
        #expect(clientGot.closes == [.closedLocally])
        client.close()   // idempotent: no second onClose
        await t.shutdown()
        #expect(clientGot.closes.count == 1 && serverGot.closes.count == 1)
        #expect(t.connectionCount == 0)
    }

    @Test func envelopesArrivingBeforeStartAreDeliveredFirst() async throws {
        let t = InProcessTransport(configuration: .init(delivery: .inline))
        let pending = Locked<(any TransportConnection)?>(nil)
        _ = try await t.listen(on: .inproc(name: "late")) { c in pending.withLock { $0 = c } }
        let client = try await t.connect(to: .inproc(name: "late"))
        for i in 1...5 { try client.send(envelope(UInt64(i))) }
        let got = Received()
        try #require(pending.withLock { $0 }).start(got.handler)
        try client.send(envelope(6))
        #expect(got.sequences == [1, 2, 3, 4, 5, 6])
        await t.shutdown()
    }

    @Test func backpressureWaitsForTheReader() async throws {
        let t = InProcessTransport(configuration: .init(highWatermark: 10, lowWatermark: 2))
        let pending = Locked<(any TransportConnection)?>(nil)
        _ = try await t.listen(on: .inproc(name: "slow")) { c in pending.withLock { $0 = c } }
        let client = try await t.connect(to: .inproc(name: "slow"))
        for i in 1...20 { try client.send(envelope(UInt64(i))) }
        let resumed = Locked(false)
        let waiter = Task {
            try await client.waitUntilWritable()
            resumed.withLock { $0 = true }
        }
        await Task.yield()
        #expect(!resumed.value)   // 20 > high watermark, nobody reads
        let got = Received()
        try #require(pending.withLock { $0 }).start(got.handler)
        try await waiter.value
        #expect(resumed.value)
        try await waitUntil("20 envelopes") { got.envelopes.count == 20 }
        await t.shutdown()
    }
}

@Suite struct InProcessFaultTests {
    private func setUp(seed: UInt64 = 1, clock: ManualClock = ManualClock())
        async throws -> (InProcessTransport, any TransportConnection, Received) {
        let t = InProcessTransport(configuration: .init(delivery: .inline, delayRelease: .manual, clock: clock, seed: seed))
        let got = Received()
        _ = try await t.listen(on: .inproc(name: "server")) { $0.start(got.handler) }
        let c = try await t.connect(to: .inproc(name: "server"), from: "client")
        return (t, c, got)
    }

    @Test func dropNextN() async throws {
        let (t, c, got) = try await setUp()
        try c.send(envelope(1))
        t.faults.dropNext(3)
        for i in 2...10 { try c.send(envelope(UInt64(i))) }
        #expect(got.sequences == [1, 5, 6, 7, 8, 9, 10])
        #expect(t.faults.stats.dropped == 3)
        await t.shutdown()
    }

    @Test func dropProbabilityIsDeterministicFromTheSeed() async throws {
        func run(seed: UInt64) async throws -> [UInt64] {
            let (t, c, got) = try await setUp(seed: seed)
            t.faults.setPlan(FaultPlan(dropProbability: 0.3))
            for i in 1...1_000 { try c.send(envelope(UInt64(i))) }
            await t.shutdown()
            return got.sequences
        }
        let a = try await run(seed: 7), b = try await run(seed: 7), c = try await run(seed: 8)
        #expect(a == b)
        #expect(a != c)
        #expect(a.count > 600 && a.count < 800)          // about 70 % survive
        #expect(a == a.sorted())                          // what survives stays in order
    }

    @Test func duplicate() async throws {
        let (t, c, got) = try await setUp()
        t.faults.duplicateNext(2)
        for i in 1...4 { try c.send(envelope(UInt64(i))) }
        #expect(got.sequences == [1, 1, 2, 2, 3, 4])
        #expect(t.faults.stats.duplicated == 2)
        await t.shutdown()
    }

    @Test func delayHoldsTheConnectionInOrder() async throws {
        let clock = ManualClock()
        let (t, c, got) = try await setUp(clock: clock)
        t.faults.delayNext(1, by: .milliseconds(50))
        for i in 1...3 { try c.send(envelope(UInt64(i))) }
        #expect(got.sequences == [])                       // 2 and 3 queue behind the delayed 1
        clock.advance(by: .milliseconds(49))
        #expect(t.faults.releaseDue() == 0)
        clock.advance(by: .milliseconds(1))
        #expect(t.faults.releaseDue() == 3)
        #expect(got.sequences == [1, 2, 3])
        try c.send(envelope(4))
        #expect(got.sequences == [1, 2, 3, 4])
        await t.shutdown()
    }

    @Test func delaysReorderAcrossConnections() async throws {
        let clock = ManualClock()
        let (t, c1, got) = try await setUp(clock: clock)
        let c2 = try await t.connect(to: .inproc(name: "server"), from: "other")
        t.faults.delayNext(1, by: .milliseconds(10))
        try c1.send(envelope(1))       // delayed
        try c2.send(envelope(2))       // sent later, arrives first
        #expect(got.sequences == [2])
        clock.advance(by: .milliseconds(10))
        t.faults.releaseDue()
        #expect(got.sequences == [2, 1])
        await t.shutdown()
    }

    @Test func randomDelaysWithAutomaticRelease() async throws {
        let t = InProcessTransport(configuration: .init(seed: 3))
        let got = Received()
        _ = try await t.listen(on: .inproc(name: "s")) { $0.start(got.handler) }
        let c = try await t.connect(to: .inproc(name: "s"))
        t.faults.setPlan(FaultPlan(delayProbability: 0.5, delayRange: .milliseconds(1) ... .milliseconds(5)))
        for i in 1...200 { try c.send(envelope(UInt64(i))) }
        try await waitUntil("200 delayed envelopes") { got.envelopes.count == 200 }
        #expect(got.sequences == Array(1...200))
        #expect(t.faults.stats.delayed > 50)
        await t.shutdown()
    }

    @Test func partitionAndHeal() async throws {
        let (t, c, got) = try await setUp()
        try c.send(envelope(1))
        t.faults.partition("client", "server")
        try c.send(envelope(2))                            // lost silently
        do {
            _ = try await t.connect(to: .inproc(name: "server"), from: "client")
            Issue.record("connected across a partition")
        } catch {
            guard case .unreachable(let a, let why) = error else { Issue.record("\(error)"); return }
            #expect(a == .inproc(name: "server") && why.contains("partitioned"))
        }
        _ = try await t.connect(to: .inproc(name: "server"), from: "bystander")   // others unaffected
        t.faults.heal("client", "server")
        try c.send(envelope(3))
        #expect(got.sequences == [1, 3])
        #expect(t.faults.stats.partitioned == 1)
        t.faults.isolate("server")
        try c.send(envelope(4))
        t.faults.healAll()
        try c.send(envelope(5))
        #expect(got.sequences == [1, 3, 5])
        await t.shutdown()
    }

    @Test func disconnectBreaksBothEnds() async throws {
        let (t, c, got) = try await setUp()
        let clientGot = Received()
        c.start(clientGot.handler)
        #expect(t.faults.disconnect("client", "server") == 1)
        let reason = CloseReason.transportError("fault injection: disconnected")
        #expect(got.closes == [reason] && clientGot.closes == [reason])
        #expect(throws: TransportError.closed(reason)) { try c.send(envelope(1)) }
        await t.shutdown()
        #expect(got.closes.count == 1)
    }
}
