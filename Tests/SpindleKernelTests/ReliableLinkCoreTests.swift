import SpindleSupport
import Testing
import SpindleKernel

/// Two cores joined by a simulated connection, driven on a ManualClock: no threads, no I/O.
private struct Simulation {
    var a: ReliableLinkCore      // initiator
    var b: ReliableLinkCore      // acceptor
    let clock = ManualClock()
    var up = false
    var connectRequested = false
    var toB: [Envelope] = []
    var toA: [Envelope] = []
    var deliveredAtB: [Envelope] = []
    var deliveredAtA: [Envelope] = []
    var undeliverableAtA: [([Envelope], UndeliverableReason)] = []
    var undeliverableAtB: [([Envelope], UndeliverableReason)] = []
    var eventsAtA: [ReliableLinkEvent] = []
    var eventsAtB: [ReliableLinkEvent] = []
    var closeRequests: [ReliableLinkFault] = []
    /// A side asked to close the connection: it goes down at the next pump or tick, as a
    /// shell's close would take it down (what that side sent before is still delivered, as a
    /// graceful close flushes it).
    var closePending = false
    var closePendingByB = false

    init(configuration: ReliableLinkCore.Configuration = .init()) {
        let session = SessionID.generate()
        a = ReliableLinkCore(role: .initiator, session: session, configuration: configuration, incarnation: 0xA1)
        b = ReliableLinkCore(role: .acceptor, session: session, configuration: configuration, incarnation: 0xB1)
    }

    var now: MonotonicInstant { clock.now() }

    mutating func applyA(_ actions: [ReliableLinkCore.Action]) {
        for act in actions {
            switch act {
            case .transmit(let e): if up { toB.append(e) }
            case .deliver(let e): deliveredAtA.append(e)
            case .connect: connectRequested = true
            case .undeliverable(let es, let why): undeliverableAtA.append((es, why))
            case .closeConnection(let why): closeRequests.append(why); closePending = up
            case .notify(let event): eventsAtA.append(event)
            }
        }
    }

    mutating func applyB(_ actions: [ReliableLinkCore.Action]) {
        for act in actions {
            switch act {
            case .transmit(let e): if up { toA.append(e) }
            case .deliver(let e): deliveredAtB.append(e)
            case .closeConnection(let why): closeRequests.append(why); closePending = up; closePendingByB = up
            case .undeliverable(let es, let why): undeliverableAtB.append((es, why))
            case .notify(let event): eventsAtB.append(event)
            case .connect: break
            }
        }
    }

    mutating func sendFromB(_ e: Envelope) { applyB(b.handle(.send(e), now: now)) }

    /// Takes the connection down if a side asked to close it.
    mutating func settleCloses() {
        guard closePending else { return }
        closePending = false
        if closePendingByB {
            closePendingByB = false
            while !toA.isEmpty { let e = toA.removeFirst(); applyA(a.handle(.received(e), now: now)) }
        } else {
            while !toB.isEmpty { let e = toB.removeFirst(); applyB(b.handle(.received(e), now: now)) }
        }
        closePending = false
        closePendingByB = false
        disconnect()
    }

    mutating func send(_ e: Envelope) { applyA(a.handle(.send(e), now: now)) }

    mutating func tick() {
        applyA(a.handle(.tick, now: now))
        applyB(b.handle(.tick, now: now))
        settleCloses()
    }

    /// Completes a requested connect.
    mutating func connect() {
        guard connectRequested else { return }
        connectRequested = false
        up = true
        applyA(a.handle(.connected, now: now))
    }

    /// Delivers up to `limit` in-flight envelopes each way.
    mutating func pump(_ limit: Int = .max) {
        var n = 0
        while n < limit, !toB.isEmpty || !toA.isEmpty {
            if !toB.isEmpty { let e = toB.removeFirst(); applyB(b.handle(.received(e), now: now)) }
            if !toA.isEmpty { let e = toA.removeFirst(); applyA(a.handle(.received(e), now: now)) }
            settleCloses()
            n += 1
        }
    }

    /// Breaks the connection: whatever is in flight is lost.
    mutating func disconnect() {
        up = false
        toA = []; toB = []
        applyA(a.handle(.disconnected("test: connection lost"), now: now))
        applyB(b.handle(.disconnected("test: connection lost"), now: now))
    }
}

@Suite struct ReliableLinkCoreTests {
    @Test func initiatorConnectsAndHandshakes() {
        var sim = Simulation()
        sim.tick()
        #expect(sim.connectRequested)
        sim.send(envelope(0, payload: [1]))              // queued before the handshake
        sim.connect()
        #expect(sim.a.phase == .handshaking)
        sim.pump()
        #expect(sim.a.phase == .established && sim.b.phase == .established)
        #expect(sim.deliveredAtB.map(\.payload) == [[1]])
        #expect(sim.deliveredAtB[0].sequence == 1 && !sim.deliveredAtB[0].flags.contains(.sequenced))
    }

    /// 10 000 messages; the connection drops three times mid-stream, losing what is in flight;
    /// every message arrives exactly once, in order, and the sender's queue drains.
    @Test func tenThousandAcrossThreeConnectionLosses() {
        var sim = Simulation()
        var rng = SeededRNG(seed: 99)
        let drops: Set<Int> = [2_500, 5_000, 7_500]
        sim.tick(); sim.connect(); sim.pump()
        for i in 1...10_000 {
            sim.send(envelope(UInt64(i), payload: [UInt8(truncatingIfNeeded: i)]))
            if Int.random(in: 0..<4, using: &rng) == 0 { sim.pump(Int.random(in: 1...40, using: &rng)) }
            if drops.contains(i) {
                sim.disconnect()
                // Reconnect after the backoff.
                while !sim.connectRequested {
                    sim.clock.advance(by: .milliseconds(5))
                    sim.tick()
                }
                sim.connect()
            }
            if i % 100 == 0 { sim.clock.advance(by: .milliseconds(1)); sim.tick() }
        }
        for _ in 0..<10 { sim.pump(); sim.clock.advance(by: .milliseconds(10)); sim.tick() }
        #expect(sim.deliveredAtB.count == 10_000)
        #expect(sim.deliveredAtB.map(\.sequence) == Array(1...10_000))
        #expect(sim.deliveredAtB.map(\.payload) == (1...10_000).map { [UInt8(truncatingIfNeeded: $0)] })
        #expect(sim.a.queuedCount == 0)
        #expect(sim.a.reconnects == 4)      // first connect + three reconnects
        #expect(sim.undeliverableAtA.isEmpty)
    }

    @Test func duplicatesAreDropped() {
        var sim = Simulation()
        sim.tick(); sim.connect(); sim.pump()
        sim.send(envelope(1))
        let copy = sim.toB[0]
        sim.toB.append(copy)
        sim.pump()
        #expect(sim.deliveredAtB.count == 1)
        #expect(sim.b.duplicatesDropped == 1)
    }

    @Test func lossOnALiveConnectionClosesItAndTheNextOneResends() {
        var sim = Simulation()
        sim.tick(); sim.connect(); sim.pump()
        for i in 1...5 { sim.send(envelope(UInt64(i))) }
        sim.toB.remove(at: 1)                           // sequence 2 lost, connection stays up
        sim.pump()
        #expect(sim.deliveredAtB.map(\.sequence) == [1])
        #expect(sim.b.outOfOrderDropped >= 1)
        #expect(sim.closeRequests.first == .sequenceGap(expected: 2, received: 3))
        while !sim.connectRequested { sim.clock.advance(by: .milliseconds(5)); sim.tick() }
        sim.connect(); sim.pump()
        #expect(sim.deliveredAtB.map(\.sequence) == [1, 2, 3, 4, 5])
        #expect(sim.a.retransmitted == 4)               // 1 was acknowledged by the handshake reply
    }

    @Test func anEstablishedLinkNeverResendsOnATimer() {
        var sim = Simulation(configuration: .init(livenessBound: .seconds(60)))
        sim.tick(); sim.connect(); sim.pump()
        for i in 1...5 { sim.send(envelope(UInt64(i))) }
        sim.toB.removeAll()                             // the ack watchdog is the only remedy
        for _ in 0..<4 { sim.clock.advance(by: .seconds(1)); sim.tick(); sim.pump() }
        #expect(sim.deliveredAtB.isEmpty && sim.a.retransmitted == 0)
    }

    @Test func transmittedButUnacknowledgedMessagesTripTheAckWatchdog() {
        var sim = Simulation(configuration: .init(heartbeatInterval: .milliseconds(100), livenessBound: .seconds(5),
                                                  ackTimeout: .seconds(1)))
        sim.tick(); sim.connect(); sim.pump()
        sim.send(envelope(1))
        sim.toB.removeAll()                             // the last message vanishes: no gap to see
        for _ in 0..<10 { sim.clock.advance(by: .milliseconds(100)); sim.tick(); sim.pump() }
        #expect(sim.closeRequests.contains(.acknowledgementTimedOut(after: .seconds(1))))
        while !sim.connectRequested { sim.clock.advance(by: .milliseconds(5)); sim.tick() }
        sim.connect(); sim.pump()
        #expect(sim.deliveredAtB.map(\.sequence) == [1])
    }

    @Test func cumulativeAcksReleaseTheQueue() {
        var sim = Simulation(configuration: .init(ackEvery: 10, ackDelay: .milliseconds(5)))
        sim.tick(); sim.connect(); sim.pump()
        for i in 1...25 { sim.send(envelope(UInt64(i))) }
        sim.pump()
        #expect(sim.a.queuedCount == 5)                 // acks after 10 and 20
        sim.clock.advance(by: .milliseconds(5))
        sim.tick(); sim.pump()
        #expect(sim.a.queuedCount == 0)                 // the delayed ack covers the rest
    }

    @Test func deliveryTimeoutReturnsQueuedMessagesWithTheReason() {
        var sim = Simulation(configuration: .init(deliveryTimeout: .seconds(30), livenessBound: .seconds(60)))
        sim.tick()
        #expect(sim.connectRequested)
        sim.connectRequested = false
        sim.applyA(sim.a.handle(.connectFailed("cannot reach inproc://server: no listener"), now: sim.now))
        for i in 1...3 { sim.send(envelope(UInt64(i), payload: [UInt8(i)])) }
        sim.clock.advance(by: .seconds(29))
        sim.tick()
        #expect(sim.undeliverableAtA.isEmpty)
        sim.clock.advance(by: .seconds(1))
        sim.tick()
        #expect(sim.undeliverableAtA.count == 1)
        let (returned, reason) = sim.undeliverableAtA[0]
        #expect(returned.map(\.payload) == [[1], [2], [3]])
        #expect(!returned[0].flags.contains(.sequenced))
        #expect(reason == .timedOut(after: .seconds(30), lastError: "cannot reach inproc://server: no listener"))
        #expect(reason.description.contains("no listener"))
        #expect(sim.a.queuedCount == 0)
    }

    @Test func skipAfterTimeoutLetsTheReceiverMoveOn() {
        var sim = Simulation(configuration: .init(deliveryTimeout: .seconds(5), livenessBound: .seconds(60)))
        sim.tick(); sim.connect(); sim.pump()
        sim.send(envelope(1))
        sim.toB.removeAll()                              // lost
        sim.clock.advance(by: .seconds(5))
        sim.tick()                                       // returned; skip sent
        #expect(sim.undeliverableAtA.first?.0.count == 1)
        sim.send(envelope(2))
        sim.pump()
        #expect(sim.deliveredAtB.map(\.sequence) == [2])
    }

    @Test func reconnectBackoffIsExponentialJitteredAndCapped() {
        let cfg = ReliableLinkCore.Configuration(initialBackoff: .milliseconds(10), maximumBackoff: .milliseconds(200),
                                                 jitter: 0.5)
        var sim = Simulation(configuration: cfg)
        sim.tick()
        var delays: [Duration] = []
        for _ in 0..<10 {
            #expect(sim.connectRequested)
            sim.connectRequested = false
            let failedAt = sim.now
            sim.applyA(sim.a.handle(.connectFailed("refused"), now: failedAt))
            while !sim.connectRequested {
                sim.clock.advance(by: .microseconds(100))
                sim.tick()
            }
            delays.append(sim.now - failedAt)
        }
        for (k, d) in delays.enumerated() {
            let full = min(10 * (1 << k), 200)
            #expect(d >= .milliseconds(full) / 2 && d <= .milliseconds(full) + .microseconds(100), "attempt \(k): \(d)")
        }
        #expect(Set(delays).count > 5)                  // jitter varies them
    }

    @Test func aRestartedAcceptorStartsANewSessionOnBothSides() {
        var sim = Simulation()
        sim.tick(); sim.connect(); sim.pump()
        for i in 1...100 { sim.send(envelope(UInt64(i))) }
        sim.pump()
        sim.clock.advance(by: .milliseconds(10)); sim.tick(); sim.pump()
        #expect(sim.a.queuedCount == 0)
        // 101...103 are transmitted and lost with the acceptor; 104 is queued while it is down.
        for i in 101...103 { sim.send(envelope(UInt64(i), payload: [UInt8(i)])) }
        sim.toB.removeAll()
        sim.b = ReliableLinkCore(role: .acceptor, session: sim.a.session, incarnation: 0xB2)
        sim.disconnect()
        sim.send(envelope(104, payload: [104]))
        while !sim.connectRequested { sim.clock.advance(by: .milliseconds(5)); sim.tick() }
        sim.connect(); sim.pump()
        // Not known to be delivered: returned. Never sent: renumbered from 1 and delivered.
        #expect(sim.undeliverableAtA.count == 1)
        #expect(sim.undeliverableAtA.first?.0.map(\.payload) == [[101], [102], [103]])
        #expect(sim.undeliverableAtA.first?.1 == .peerRestarted)
        #expect(sim.eventsAtA.contains(.peerRestarted))
        #expect(sim.deliveredAtB.last?.payload == [104] && sim.deliveredAtB.last?.sequence == 1)
        // The new acceptor's first messages are not taken for duplicates of the old numbering.
        for i in 1...3 { sim.sendFromB(envelope(UInt64(i), payload: [UInt8(200 + i)])) }
        sim.pump()
        #expect(sim.deliveredAtA.map(\.payload) == [[201], [202], [203]])
        #expect(sim.a.duplicatesDropped == 0)
    }

    @Test func hostileControlValuesCloseTheConnectionInsteadOfTrapping() {
        var sim = Simulation()
        sim.tick(); sim.connect(); sim.pump()
        // A skip far beyond the window, a data sequence beyond any session, an ack of unsent.
        sim.applyB(sim.b.handle(.received(Envelope(protocolTag: .reliable, kind: ReliableWire.skip, sequence: .max)), now: sim.now))
        var data = envelope(1)
        data.flags.insert(.sequenced)
        data.sequence = .max
        sim.applyB(sim.b.handle(.received(data), now: sim.now))
        sim.applyB(sim.b.handle(.received(Envelope(protocolTag: .reliable, kind: ReliableWire.ack, sequence: .max)), now: sim.now))
        #expect(sim.closeRequests.count == 3)
        #expect(sim.closeRequests.allSatisfy { if case .protocolViolation = $0 { return true } else { return false } })
        #expect(sim.b.deliveredUpTo == 0)
        // A fresh acceptor given a hello with correlation UInt64.max refuses it.
        var fresh = ReliableLinkCore(role: .acceptor, session: sim.a.session)
        var hello = Envelope(protocolTag: .reliable, kind: ReliableWire.hello, correlation: .max, sequence: 0,
                             payload: helloPayload(session: sim.a.session, incarnation: 7))
        let out = fresh.handle(.received(hello), now: sim.now)
        #expect(out.contains { if case .closeConnection(.protocolViolation) = $0 { return true } else { return false } })
        #expect(fresh.phase != .established)
        hello.correlation = 1
        hello.sequence = .max
        #expect(fresh.handle(.received(hello), now: sim.now).contains {
            if case .closeConnection(.protocolViolation) = $0 { return true } else { return false } })
    }

    @Test func aSilentPeerIsDeclaredLostWithinTheLivenessBound() {
        var sim = Simulation(configuration: .init(heartbeatInterval: .milliseconds(200), livenessBound: .seconds(2)))
        sim.tick(); sim.connect(); sim.pump()
        for step in 0..<10 { sim.clock.advance(by: .milliseconds(200)); sim.tick(); sim.pump(); _ = step }
        #expect(sim.eventsAtA.filter { if case .peerLost = $0 { return true } else { return false } }.isEmpty,
                "heartbeats keep a quiet but live link up")
        for i in 1...3 { sim.send(envelope(UInt64(i))) }
        // The acceptor stops answering (stopped process, dropped traffic): nothing reaches A.
        var elapsed: Duration = .zero
        while !sim.eventsAtA.contains(where: { if case .peerLost = $0 { return true } else { return false } }) {
            sim.clock.advance(by: .milliseconds(100)); elapsed += .milliseconds(100)
            sim.toA.removeAll()
            sim.applyA(sim.a.handle(.tick, now: sim.now))
            #expect(elapsed <= .seconds(2), "not detected within the liveness bound")
            if elapsed > .seconds(3) { break }
        }
        #expect(sim.closeRequests.contains(.peerUnresponsive(after: .seconds(2))))
        #expect(sim.undeliverableAtA.first?.0.count == 3)
        #expect(sim.undeliverableAtA.first?.1 == .peerUnresponsive(after: .seconds(2)))
        #expect(sim.a.peerLost)
    }

    @Test func aLocalStallIsNotCountedAgainstThePeer() {
        var sim = Simulation(configuration: .init(heartbeatInterval: .milliseconds(200), livenessBound: .seconds(2)))
        sim.tick(); sim.connect(); sim.pump()
        sim.tick()                                     // the tick that sets the next expected one
        // This process is not scheduled for 10 s: the first tick after it comes 10 s late.
        sim.clock.advance(by: .seconds(10))
        sim.applyA(sim.a.handle(.tick, now: sim.now))
        #expect(!sim.a.peerLost && sim.a.pausesForgiven == 1)
        // A peer that is really silent is still found out, one bound later.
        var elapsed: Duration = .zero
        while !sim.a.peerLost && elapsed < .seconds(5) {
            sim.clock.advance(by: .milliseconds(100)); elapsed += .milliseconds(100)
            sim.toA.removeAll()
            sim.applyA(sim.a.handle(.tick, now: sim.now))
        }
        #expect(sim.a.peerLost && elapsed <= .seconds(2))
    }

    @Test func aGracefulCloseReturnsExactlyWhatThePeerDidNotDeliver() {
        var sim = Simulation(configuration: .init(ackEvery: 1_000))
        sim.tick(); sim.connect(); sim.pump()
        for i in 1...10 { sim.sendFromB(envelope(UInt64(i))) }
        sim.pump(6)                                     // A delivers some; no acks sent yet
        let deliveredBeforeClose = sim.deliveredAtA.count
        sim.applyA(sim.a.handle(.close, now: sim.now))   // fin carries A's final ack
        sim.pump()
        sim.settleCloses()
        let returned = sim.undeliverableAtB.flatMap(\.0).count
        #expect(sim.deliveredAtA.count == deliveredBeforeClose, "nothing is delivered after fin")
        #expect(deliveredBeforeClose + returned == 10)
        #expect(sim.undeliverableAtB.allSatisfy { $0.1 == .peerClosed })
        #expect(sim.eventsAtB.contains(.peerClosed))
        #expect(sim.a.phase == .closed)
    }

    @Test func theQueueIsCappedInBytes() {
        var core = ReliableLinkCore(role: .initiator, session: .generate(),
                                    configuration: .init(maximumQueuedBytes: 10_000))
        var actions: [ReliableLinkCore.Action] = []
        var refused: ReliableLinkError? = nil
        for i in 1...100 where refused == nil {
            refused = core.send(envelope(UInt64(i), payload: Array(repeating: 1, count: 1_000)), now: .zero, into: &actions)
        }
        #expect(refused == .queueBytesFull(limit: 10_000))
        #expect(core.queuedBytes >= 10_000 && core.queuedBytes < 11_100)
    }

    @Test func protocolViolationsAskToCloseTheConnection() {
        var sim = Simulation()
        var data = envelope(1)
        data.flags.insert(.sequenced)
        sim.applyB(sim.b.handle(.received(data), now: sim.now))               // before any hello
        var plain = envelope(1)
        plain.flags = []
        sim.applyB(sim.b.handle(.received(plain), now: sim.now))              // not sequenced
        sim.applyB(sim.b.handle(.received(Envelope(protocolTag: .reliable, kind: 99)), now: sim.now))
        #expect(sim.closeRequests.count == 3)
        #expect(sim.closeRequests[0].description.contains("before the handshake"))
    }

    @Test func closeReturnsEverythingAndRefusesMore() {
        var sim = Simulation()
        for i in 1...4 { sim.send(envelope(UInt64(i))) }
        sim.applyA(sim.a.handle(.close, now: sim.now))
        #expect(sim.undeliverableAtA.count == 1)
        #expect(sim.undeliverableAtA[0].0.count == 4 && sim.undeliverableAtA[0].1 == .linkClosed)
        var actions: [ReliableLinkCore.Action] = []
        #expect(sim.a.send(envelope(5), now: sim.now, into: &actions) == .closed)
        #expect(actions.isEmpty)
    }

    @Test func queueLimit() {
        var sim = Simulation(configuration: .init(maximumQueued: 3))
        for i in 1...3 { sim.send(envelope(UInt64(i))) }
        var actions: [ReliableLinkCore.Action] = []
        #expect(sim.a.send(envelope(4), now: sim.now, into: &actions) == .queueFull(limit: 3))
    }

    @Test func hungConnectAndUnansweredHandshakeAreRetried() {
        var sim = Simulation(configuration: .init(initialBackoff: .milliseconds(10), jitter: 0,
                                                  connectTimeout: .seconds(2)))
        sim.tick()
        #expect(sim.connectRequested)
        sim.connectRequested = false                    // the connect never completes
        sim.clock.advance(by: .seconds(2))
        sim.tick()
        #expect(sim.a.lastError == "connect timed out after 2.0 seconds")
        // A late failure of the abandoned attempt changes nothing.
        sim.applyA(sim.a.handle(.connectFailed("late"), now: sim.now))
        #expect(sim.a.lastError == "connect timed out after 2.0 seconds")
        sim.clock.advance(by: .milliseconds(10))
        sim.tick()
        #expect(sim.connectRequested)                   // retried after the backoff
        sim.connectRequested = false
        sim.up = true
        sim.applyA(sim.a.handle(.connected, now: sim.now))
        sim.toB.removeAll()                             // the hello vanishes: no answer
        sim.clock.advance(by: .seconds(2))
        sim.tick()
        #expect(sim.closeRequests == [.handshakeTimedOut(after: .seconds(2))])
    }
}

/// Batches: `receivedBatch` (one read's envelopes) and `send(contentsOf:)`.
@Suite struct ReliableLinkCoreBatchTests {
    @Test func aBatchDeliversInOrderAndAcksOnceAtTheEnd() {
        var sim = Simulation(configuration: .init(ackEvery: 64))
        sim.tick(); sim.connect(); sim.pump()
        var actions: [ReliableLinkCore.Action] = []
        let accepted = sim.a.send(contentsOf: (1...200).map { envelope(UInt64($0)) }, now: sim.now, into: &actions)
        #expect(accepted.accepted == 200 && accepted.error == nil)
        let data = actions.compactMap { a -> Envelope? in if case .transmit(let e) = a { return e } else { return nil } }
        #expect(data.map(\.sequence) == Array(1...200))
        let out = sim.b.handle(.receivedBatch(data), now: sim.now)
        let delivered = out.compactMap { a -> UInt64? in if case .deliver(let e) = a { return e.sequence } else { return nil } }
        let acks = out.compactMap { a -> UInt64? in
            if case .transmit(let e) = a, e.protocolTag == .reliable, e.kind == ReliableWire.ack { return e.sequence }
            return nil
        }
        #expect(delivered == Array(1...200))
        #expect(acks == [200])                                // not 64, 128, 192: one, cumulative
        // The same 200 one by one ack three times.
        var one = Simulation(configuration: .init(ackEvery: 64))
        one.tick(); one.connect(); one.pump()
        var perEnvelopeAcks = 0
        for e in data {
            for a in one.b.handle(.received(e), now: one.now) {
                if case .transmit(let t) = a, t.kind == ReliableWire.ack { perEnvelopeAcks += 1 }
            }
        }
        #expect(perEnvelopeAcks == 3)
    }

    @Test func aShortBatchLeavesTheAckToTheTimer() {
        var sim = Simulation(configuration: .init(ackEvery: 64, ackDelay: .milliseconds(5)))
        sim.tick(); sim.connect(); sim.pump()
        var actions: [ReliableLinkCore.Action] = []
        _ = sim.a.send(contentsOf: (1...10).map { envelope(UInt64($0)) }, now: sim.now, into: &actions)
        let data = actions.compactMap { a -> Envelope? in if case .transmit(let e) = a { return e } else { return nil } }
        let out = sim.b.handle(.receivedBatch(data), now: sim.now)
        #expect(!out.contains { if case .transmit = $0 { return true } else { return false } })
        sim.clock.advance(by: .milliseconds(5))
        let later = sim.b.handle(.tick, now: sim.now)
        #expect(later.contains { if case .transmit(let e) = $0 { return e.kind == ReliableWire.ack && e.sequence == 10 } else { return false } })
    }

    @Test func sendContentsOfStopsAtTheFirstRefusal() {
        var core = ReliableLinkCore(role: .initiator, session: .generate(), configuration: .init(maximumQueued: 3))
        var actions: [ReliableLinkCore.Action] = []
        let r = core.send(contentsOf: (1...5).map { envelope(UInt64($0)) }, now: .zero, into: &actions)
        #expect(r.accepted == 3 && r.error == .queueFull(limit: 3))
        #expect(core.queuedCount == 3)
    }
}

/// A hello payload: session, incarnation, and the peer's incarnation as known (none).
func helloPayload(session: SessionID, incarnation: UInt64) -> [UInt8] {
    var p = [UInt8](repeating: 0, count: 32)
    p.withUnsafeMutableBytes { raw in
        raw.storeBytes(of: session.raw.high.littleEndian, toByteOffset: 0, as: UInt64.self)
        raw.storeBytes(of: session.raw.low.littleEndian, toByteOffset: 8, as: UInt64.self)
        raw.storeBytes(of: incarnation.littleEndian, toByteOffset: 16, as: UInt64.self)
    }
    return p
}
