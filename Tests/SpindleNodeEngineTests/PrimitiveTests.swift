import SpindleKernel
import Testing
@testable import SpindleNodeEngine

private let peerA = NodeID(raw: RawID128(high: 1, low: 1))
private let peerB = NodeID(raw: RawID128(high: 2, low: 2))

/// Evaluates its argument outside the `#expect` macro's decomposition (mutating calls).
private func pass<T>(_ v: T) -> T { v }

private func at(_ ms: Int64) -> MonotonicInstant { MonotonicInstant(nanoseconds: UInt64(ms) * 1_000_000) }

@Suite("Node engine primitives")
struct PrimitiveTests {
    @Test func backoffDoublesUpToTheCapWithoutJitter() {
        var c = BackoffTable.Configuration()
        c.base = .milliseconds(10)
        c.cap = .milliseconds(70)
        c.jitter = 0
        var t = BackoffTable(c, seed: 1)
        let delays = (1...6).map { _ in t.recordFailure(peerA, now: at(0)) }
        #expect(delays == [.milliseconds(10), .milliseconds(20), .milliseconds(40), .milliseconds(70), .milliseconds(70), .milliseconds(70)])
        #expect(t.isBackedOff(peerA, now: at(69)))
        #expect(!t.isBackedOff(peerA, now: at(70)))
        #expect(!t.isBackedOff(peerB, now: at(0)))
        t.recordSuccess(peerA)
        #expect(t.failures(of: peerA) == 0)
        #expect(!t.isBackedOff(peerA, now: at(1)))
        #expect(t.nominalDelay(afterFailures: 200) == .milliseconds(70))
    }

    @Test func backoffJitterStaysInsideItsBandAndIsSeeded() {
        var c = BackoffTable.Configuration()
        c.base = .milliseconds(100)
        c.cap = .seconds(100)
        c.jitter = 0.5
        var a = BackoffTable(c, seed: 42), b = BackoffTable(c, seed: 42)
        for n in 1...8 {
            let d = a.recordFailure(peerA, now: .zero)
            let nominal = a.nominalDelay(afterFailures: n)
            #expect(d <= nominal && d >= nominal / 2)
            #expect(pass(b.recordFailure(peerA, now: .zero) == d))
        }
    }

    @Test func dedupDropsDuplicatesAndEvictsByCountAndAge() {
        var d = InboundDedup(capacity: 3, maxAge: .seconds(1))
        #expect(pass(d.admit(source: peerA, sequence: 1, now: at(0))))
        #expect(pass(!d.admit(source: peerA, sequence: 1, now: at(1))))
        #expect(pass(d.admit(source: peerB, sequence: 1, now: at(2))))
        #expect(pass(d.admit(source: peerA, sequence: 2, now: at(3))))
        #expect(pass(d.admit(source: peerA, sequence: 3, now: at(4))))   // evicts (A,1): the oldest
        #expect(!d.contains(source: peerA, sequence: 1))
        #expect(pass(d.admit(source: peerA, sequence: 1, now: at(5))))   // accepted again after eviction
        #expect(d.duplicates == 1)
        d.evict(now: at(2000))
        #expect(d.count == 0)
    }

    @Test func timersPopInDeadlineThenInsertionOrderAndRespectTheCap() {
        var h = TimerHeap<String>(capacity: 3)
        #expect(pass(h.schedule(at: at(5), "b")))
        #expect(pass(h.schedule(at: at(1), "a")))
        #expect(pass(h.schedule(at: at(5), "c")))
        #expect(pass(!h.schedule(at: at(0), "refused")))
        #expect(h.refused == 1)
        #expect(h.nextDeadline == at(1))
        #expect(pass(h.popDue(now: at(0)) == nil))
        var order: [String] = []
        while let (_, p) = h.popDue(now: at(10)) { order.append(p) }
        #expect(order == ["a", "b", "c"])
    }

    @Test func rttFirstSampleAndEmaFormulas() {
        var e = RttEstimate()
        e.observe(nanoseconds: 100)
        #expect(e.srtt == 100 && e.rttvar == 50 && e.budgetNanoseconds == 300)
        e.observe(nanoseconds: 200)
        #expect(e.rttvar == 0.75 * 50 + 0.25 * 100)
        #expect(e.srtt == 0.875 * 100 + 0.125 * 200)
    }

    @Test func rttFallsBackFromChainHopToTargetToGlobalToDefault() {
        var r = RttTracker(minimumBudget: .nanoseconds(1))
        let t1 = RttTarget(peer: peerA, endpoint: "op x"), t2 = RttTarget(peer: peerB, endpoint: "op y")
        let hop = ChainHop(chain: ChainHop.chainID(targets: "a,b"), hop: 1)
        #expect(r.estimate(t1, chain: hop, staticDefault: .seconds(3)) == (.seconds(3), .staticDefault))
        r.observe(t1, chain: nil, roundTrip: .milliseconds(10))
        #expect(r.estimate(t1, chain: hop, staticDefault: .seconds(3)).tier == .target)
        #expect(r.estimate(t1, chain: hop, staticDefault: .seconds(3)).budget == .milliseconds(30))
        #expect(r.estimate(t2, chain: nil, staticDefault: .seconds(3)).tier == .global)
        r.observe(t1, chain: hop, roundTrip: .milliseconds(2))
        let viaHop = r.estimate(t1, chain: hop, staticDefault: .seconds(3))
        #expect(viaHop.tier == .chainHop && viaHop.budget == .milliseconds(6))
        #expect(ChainHop.chainID(targets: "a,b") == ChainHop.chainID(targets: "a,b"))
        #expect(ChainHop.chainID(targets: "a,b") != ChainHop.chainID(targets: "b,a"))
    }

    @Test func phiSuspectsOnceAndTrustsOnceAgain() {
        var c = PhiAccrualDetector.Configuration()
        c.minimumDeviation = .milliseconds(5)
        c.acceptablePause = .zero
        var d = PhiAccrualDetector(c)
        for i in 0...10 { #expect(d.heartbeat(peerA, at: at(Int64(i) * 100)) == nil) }
        #expect(d.phi(peerA, at: at(1000)) < 1)
        #expect(pass(d.check(peerA, at: at(1050)) == nil))
        #expect(pass(d.check(peerA, at: at(1400)) == .suspected(peerA)))
        #expect(pass(d.check(peerA, at: at(1500)) == nil))          // no second report while still suspected
        #expect(d.isSuspected(peerA))
        #expect(pass(d.heartbeat(peerA, at: at(1600)) == .trusted(peerA)))
        #expect(pass(d.heartbeat(peerA, at: at(1700)) == nil))   // no second report while trusted
    }

    @Test func backpressureSendsBoundedNoticesThenDropsSilently() {
        var b = BackpressureTracker(noticesPerEpisode: 2)
        #expect(pass(b.refused(from: peerA) == .notify))
        #expect(pass(b.refused(from: peerA) == .notify))
        #expect(pass(b.refused(from: peerA) == .silentDrop))
        #expect(pass(b.refused(from: peerB) == .notify))
        #expect(b.noticesTotal == 3 && b.silentDrops == 1)
        #expect(b.isOverloaded)
        b.relieved()
        #expect(!b.isOverloaded)
        #expect(pass(b.refused(from: peerA) == .notify))
    }

    @Test func gateAcquiresUpToItsLimitAndReleases() {
        var g = PeerGate(limit: 2)
        #expect(pass(g.tryAcquire(peerA) && g.tryAcquire(peerA)))
        #expect(pass(!g.tryAcquire(peerA)))
        #expect(pass(g.tryAcquire(peerB)))
        #expect(g.refusals == 1 && g.inFlight(to: peerA) == 2)
        g.release(peerA)
        #expect(pass(g.tryAcquire(peerA)))
        g.release(peerA); g.release(peerA); g.release(peerA)
        #expect(g.inFlight(to: peerA) == 0)
    }

    @Test func governorAppliesListsAndReportsEachStatusChangeOnce() {
        var g = PeerGovernor(failuresUntilDown: 2)
        #expect(g.isAllowed(peerA))
        g.blockList = [peerA]
        #expect(!g.isAllowed(peerA))
        g.blockList = []
        g.allowList = [peerB]
        #expect(!g.isAllowed(peerA) && g.isAllowed(peerB))
        #expect(pass(g.observeAlive(peerB) == .up))
        #expect(pass(g.observeAlive(peerB) == nil))
        #expect(pass(g.observeFailure(peerB) == nil))
        #expect(pass(g.observeFailure(peerB) == .down))
        #expect(pass(g.observeFailure(peerB) == nil))
        #expect(pass(g.observeAlive(peerB) == .up))
    }

    @Test func addressBookCountsReferences() throws {
        var book = AddressBook()
        let a = try Address(parsing: "inproc://a")
        book.retain(peerA, addresses: [a])
        book.retain(peerA, addresses: [a])
        #expect(book.references(to: peerA) == 2 && book.lookup(peerA) == [a])
        #expect(pass(book.release(peerA) == 1))
        #expect(pass(book.release(peerA) == 0))
        #expect(book.lookup(peerA) == nil)
        book.setName("alpha", for: peerA)
        #expect(book.resolve("alpha") == peerA)
        #expect(book.resolve(peerB.description) == peerB)
        #expect(book.resolve("nobody") == nil)
    }

    @Test func outboundQueueDropsTheOldestWhenFull() {
        var q = OutboundQueue(capacity: 2)
        for k in 1...3 { q.push(Envelope(protocolTag: .nodeEngine, kind: UInt16(k))) }
        #expect(q.dropped == 1)
        #expect(pass(q.drain().map(\.kind) == [2, 3]))
        #expect(q.count == 0)
    }

    @Test func requestTrackerExpiresByTTLAndRefusesOverCapacity() {
        var r = RequestTracker(capacity: 2)
        let e1 = RequestTracker.Entry(command: CommandID(1), peer: peerA, endpoint: "x", sentAt: at(0), expiresAt: at(10))
        let e2 = RequestTracker.Entry(command: CommandID(2), peer: peerA, endpoint: "x", sentAt: at(0), expiresAt: at(20))
        let id1 = r.begin(e1), id2 = r.begin(e2)
        #expect(pass(id1 != nil && id2 != nil && r.begin(e1) == nil))
        #expect(r.nextExpiry == at(10))
        #expect(pass(r.expire(now: at(15)).map(\.entry.command) == [CommandID(1)]))
        #expect(pass(r.finish(id1!) == nil))
        #expect(pass(r.finish(id2!)?.command == CommandID(2)))
    }

    @Test func namedStorageIsBoundedAndOrdered() {
        var q = SerializeQueues(capacityPerName: 2)
        #expect(pass(q.enqueue("q", .int(1)) && q.enqueue("q", .int(2))))
        #expect(pass(!q.enqueue("q", .int(3)) && q.dropped == 1))
        #expect(pass(q.dequeue("q") == .int(1) && q.dequeue("q") == .int(2) && q.dequeue("q") == nil))
        var h = HoldTable(capacityPerName: 2)
        h.stash("h", .int(1)); h.stash("h", .int(2)); h.stash("h", .int(3))
        #expect(pass(h.flush("h") == [.int(2), .int(3)] && h.dropped == 1 && h.flush("h") == []))
        var r = RecordRings(capacityPerName: 2)
        r.record("r", .int(1)); r.record("r", .int(2)); r.record("r", .int(3))
        #expect(r.values("r") == [.int(2), .int(3)] && r.overwritten == 1)
    }

    @Test func truncationNeverSplitsACharacter() {
        let text = "ab€€"   // € is 3 bytes
        #expect(Ingress.truncate(text, toBytes: 4) == "ab")
        #expect(Ingress.truncate(text, toBytes: 5) == "ab€")
        #expect(Ingress.truncate(text, toBytes: 100) == text)
        #expect(Ingress.truncate("🙂🙂", toBytes: 7) == "🙂")
    }

    @Test func valueCodecRoundTripsAndRejectsGarbage() throws {
        let values: [Value] = [.unit, .bool(true), .int(-5), .uint(.max), .double(1.5), .string("hé"), .bytes([1, 2]),
                               .list([.int(1), .list([.string("x")])])]
        let bytes = WireMessage.encodeValues(values)
        #expect(try WireMessage.decodeValues(bytes) == values)
        for cut in 0..<bytes.count {
            #expect(throws: ValueDecodingError.self) { try WireMessage.decodeValues(Array(bytes[..<cut])) }
        }
        #expect(throws: ValueDecodingError.self) { try WireMessage.decodeValues([1, 0, 0, 0, 99]) }
        #expect(throws: ValueDecodingError.self) { try WireMessage.decodeValues([0xFF, 0xFF, 0xFF, 0xFF, 7]) }
    }
}
