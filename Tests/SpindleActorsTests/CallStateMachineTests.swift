@testable import SpindleActors
import SpindleKernel
import Testing

@Suite("Call bookkeeping (value types, no I/O)")
struct CallStateMachineTests {
    let a = NodeID(raw: RawID128(high: 1, low: 1))
    let b = NodeID(raw: RawID128(high: 1, low: 2))
    func t(_ ms: UInt64) -> MonotonicInstant { MonotonicInstant(nanoseconds: ms * 1_000_000) }

    @Test("a pair runs one call at a time in arrival order; other pairs run at once")
    func fifoPerPair() {
        var s = InboundScheduler<String>()
        let pairA = CallerActorPair(caller: a, actor: .number(1))
        let pairB = CallerActorPair(caller: b, actor: .number(1))
        func entry(_ n: NodeID, _ c: UInt64) -> InboundScheduler<String>.Entry {
            .init(key: InboundCallKey(caller: n, correlation: c), deadline: nil, work: "\(n == a ? "a" : "b")\(c)")
        }
        let started = [s.arrive(pairA, entry(a, 1)), s.arrive(pairA, entry(a, 2)), s.arrive(pairA, entry(a, 3)),
                       s.arrive(pairA, entry(a, 2)),             // a duplicate is ignored
                       s.arrive(pairB, entry(b, 1))]             // another caller: runs now
        #expect(started == ["a1", nil, nil, nil, "b1"])
        let next = [s.finished(InboundCallKey(caller: a, correlation: 1))?.work,
                    s.finished(InboundCallKey(caller: a, correlation: 2))?.work,
                    s.finished(InboundCallKey(caller: a, correlation: 3))?.work,
                    s.finished(InboundCallKey(caller: b, correlation: 1))?.work]
        #expect(next == ["a2", "a3", nil, nil])
        #expect(s.count == 0)
    }

    @Test("cancelling a queued call takes it out; a running one is named; deadlines drop and name")
    func cancelAndExpire() {
        var s = InboundScheduler<Int>()
        let pair = CallerActorPair(caller: a, actor: .name("x"))
        func key(_ c: UInt64) -> InboundCallKey { InboundCallKey(caller: a, correlation: c) }
        _ = s.arrive(pair, .init(key: key(1), deadline: t(100), work: 1))
        _ = s.arrive(pair, .init(key: key(2), deadline: t(50), work: 2))
        _ = s.arrive(pair, .init(key: key(3), deadline: t(500), work: 3))
        _ = s.arrive(pair, .init(key: key(4), deadline: nil, work: 4))
        let c1 = s.cancel(key(1)), c3 = s.cancel(key(3)), c9 = s.cancel(key(9))
        if case .running = c1 {} else { Issue.record("the running call is not named") }
        if case .queued(let e) = c3 { #expect(e.work == 3) } else { Issue.record("queued call not taken out") }
        if case .unknown = c9 {} else { Issue.record("an unknown call was found") }
        #expect(s.nextDeadline == t(50))
        let expired = s.expire(now: t(120))
        #expect(expired.dropped.map(\.work) == [2])
        #expect(expired.running == [key(1)])
        let again = s.expire(now: t(130))
        #expect(again.running.isEmpty)                           // named once
        let next = s.finished(key(1))
        #expect(next?.work == 4)
        let dropped = s.dropAll(from: a)
        #expect(dropped.dropped.isEmpty && dropped.running == [key(4)])
    }

    @Test("outbound calls: cancellation before registration, by route, by node, by deadline — in id order")
    func outbound() {
        var calls = OutboundCalls<Int>()
        let x = ActorID(node: a, local: .number(1)), y = ActorID(node: b, local: .number(1))
        func call(_ id: UInt64, _ actor: ActorID, route: UInt64, deadline: UInt64) -> OutboundCalls<Int>.Call {
            .init(id: id, actor: actor, target: "f", route: route, deadline: t(deadline), budget: .seconds(1),
                  startedAt: .zero, waiter: Int(id))
        }
        let ids = (0..<5).map { _ in calls.makeID() }
        #expect(ids == [1, 2, 3, 4, 5])
        let early = calls.cancel(1)                              // not registered yet
        #expect(early == nil)
        let refused = calls.register(call(1, x, route: 7, deadline: 10))
        #expect(!refused)
        for (id, actor, route, d) in [(2, x, 7, 30), (3, y, 8, 20), (4, x, 8, 40), (5, y, 7, 50)] as [(UInt64, ActorID, UInt64, UInt64)] {
            let ok = calls.register(call(id, actor, route: route, deadline: d))
            #expect(ok)
        }
        #expect(calls.nextDeadline == t(20))
        let expired = calls.takeExpired(now: t(30)).map(\.id)
        let onRoute = calls.takeAll(onRoute: 7).map(\.id)
        let toNode = calls.takeAll(toNode: a).map(\.id)
        #expect(expired == [2, 3] && onRoute == [5] && toNode == [4])
        #expect(calls.count == 0)
        let late = calls.cancel(4)                               // already ended: nothing remembered
        #expect(late == nil)
        let reused = calls.register(call(4, x, route: 1, deadline: 1))
        #expect(reused)
    }
}
