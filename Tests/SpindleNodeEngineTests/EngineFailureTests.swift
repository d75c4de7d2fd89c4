import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleNodeEngine

/// Issue 22's defects, one test each (every one fails on the engine before the issue), and
/// failure handling that acts: heartbeats, liveness, peers down, backoff notices.
@Suite("Engine failures")
struct EngineFailureTests {
    static let b = NodeID(raw: RawID128(high: 0xb, low: 0xb))
    static let mallory = NodeID(raw: RawID128(high: 0x666, low: 0x666))

    /// A node whose site `in` calls op `echo` on peer `b` (named by id).
    static func caller(timeoutMs: Int64 = 1000, configure: (inout NodeConfiguration) -> Void = { _ in }) throws -> Node {
        var p = ProgramBuilder("caller")
        p.site("in"); p.site("got")
        p.syscall("call", .wireCall, inputs: ["in": "in"], outputs: ["out": "got"],
                  params: ["peer": .string("b"), "op": .string("echo"), "timeoutMs": .int(timeoutMs)])
        var c = NodeConfiguration()
        configure(&c)
        let node = Node(id: NodeID(raw: RawID128(high: 0xa, low: 0xa)), configuration: c, clock: ManualClock())
        try node.install(p.program)
        node.addPeer(b, name: "b")
        return node
    }

    static func response(from source: NodeID, to node: Node, correlation: UInt64, _ values: [Value]) -> Envelope {
        Envelope(protocolTag: .nodeEngine, kind: WireKind.response.rawValue, flags: .response, source: source,
                 destination: node.id, correlation: correlation, payload: WireMessage.encodeValues(values))
    }

    @Test func aSixtySecondSleepCompletesOnAManualClock() throws {
        var b = ProgramBuilder("nap")
        b.site("in"); b.site("out")
        b.syscall("nap", .sleep, inputs: ["in": "in"], outputs: ["out": "out"], params: ["delayMs": .int(60_000)])
        let (node, _) = try makeNode(b.program)
        let exec = try node.start(site: "in", value: .int(1))
        #expect(node.poll(now: .zero).nextDeadline == ms(60_000))
        let half = node.poll(now: ms(30_001))
        #expect(half.events.failures.isEmpty && half.finished.isEmpty)   // the default async deadline is 30 s
        let done = node.poll(now: ms(60_000))
        #expect(done.finished.map(\.id) == [exec])
        #expect(done.finished.first?.result("out") == .int(1) && done.finished.first?.failures == 0)
    }

    @Test func aResponseFromTheWrongSourceLeavesTheRequestWaitingForTheRealOne() throws {
        let node = try Self.caller()
        let exec = try node.start(site: "in", value: .int(7))
        let request = try #require(node.poll(now: .zero).outbound.first)
        node.deliver(Self.response(from: Self.mallory, to: node, correlation: request.correlation, [.int(666)]))
        let forged = node.poll(now: ms(1))
        #expect(forged.events.map(\.event).contains(.unknownResponse(peer: Self.mallory, correlation: request.correlation)))
        #expect(forged.finished.isEmpty)
        #expect(node.context.peers.gate.inFlight(to: Self.b) == 1)
        node.deliver(Self.response(from: Self.b, to: node, correlation: request.correlation, [.int(7)]))
        let real = node.poll(now: ms(2))
        #expect(real.finished.map(\.id) == [exec])
        #expect(real.finished.first?.result("got") == .int(7))
        #expect(node.context.peers.gate.inFlight(to: Self.b) == 0)
    }

    @Test func aBackoffNoticeFailsItsCallAtOnceAndBacksOffOnce() throws {
        let node = try Self.caller(timeoutMs: 1000)
        let exec = try node.start(site: "in", value: .int(1))
        let request = try #require(node.poll(now: .zero).outbound.first)
        node.deliver(Envelope(protocolTag: .nodeEngine, kind: WireKind.backoffNotice.rawValue, source: Self.b,
                              destination: node.id, correlation: request.correlation))
        let o = node.poll(now: ms(1))
        #expect(o.events.failures == [OpFailure(op: "call", execution: exec, reason: .overloaded(Self.b))])
        #expect(o.finished.map(\.id) == [exec])
        _ = node.poll(now: ms(2_000))                      // long past the call's deadline
        #expect(node.context.peers.backoff.failures(of: Self.b) == 1)
        #expect(node.context.peers.gate.inFlight(to: Self.b) == 0)
    }

    @Test func aFailingOpInASiteTargetedCallReachesTheCallerAsThatFailure() async throws {
        var server = ProgramBuilder("server")
        server.site("ask"); server.site("out")
        server.op("f", .component(slot: "math", op: "fail"), inputs: ["x": "ask"], outputs: ["y": "out"])
        server.syscall("reply", .reply, inputs: ["in": "out"])
        var client = ProgramBuilder("client")
        client.site("in"); client.site("got")
        client.syscall("call", .wireCall, inputs: ["in": "in"], outputs: ["out": "got"],
                       params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(500)])
        let sim = try await Simulation(names: ["a", "b"], seed: 22) { name, node in
            try node.install(MathComponent(), at: "math")
            try node.install(name == "b" ? server.program : client.program)
        }
        let exec = try sim.node("a").start(site: "in", value: .int(1))
        sim.run(for: .milliseconds(5))
        #expect(sim.trace.contains { $0.contains("a bus opFailed(op `call` in \(exec): remote error: op `f` failed: boom)") })
        #expect(!sim.trace.contains { $0.contains("without replying") })
        await sim.shutdown()
    }

    @Test func thePendingCapAppliesToOpsNotDeclaredAsync() throws {
        var b = ProgramBuilder("cap")
        b.site("in"); b.site("out")
        b.op("park", .component(slot: "sneaky", op: "park"), inputs: ["x": "in"], outputs: ["y": "out"])
        let node = Node(configuration: { var c = NodeConfiguration(); c.maxPendingAsync = 1; return c }(), clock: ManualClock())
        let sneaky = SneakyComponent()
        try node.install(sneaky, at: "sneaky")
        try node.install(b.program)
        _ = try node.start(site: "in", value: .int(1))
        let second = try node.start(site: "in", value: .int(2))
        let o = node.poll(now: .zero)
        #expect(node.pendingAsyncCount == 1)
        #expect(o.events.failures == [OpFailure(op: "park", execution: second, reason: .cooldown)])
        #expect(o.finished.map(\.id) == [second])
    }

    @Test func aReusedCommandIDFailsTheSecondOpAndStrandsNoExecution() throws {
        var b = ProgramBuilder("reuse")
        b.site("first"); b.site("again"); b.site("out")
        b.op("park", .component(slot: "sneaky", op: "park"), inputs: ["x": "first"], outputs: ["y": "out"])
        b.op("reuse", .component(slot: "sneaky", op: "reuse"), inputs: ["x": "again"], outputs: ["y": "out"])
        let node = Node(clock: ManualClock())
        let sneaky = SneakyComponent()
        try node.install(sneaky, at: "sneaky")
        try node.install(b.program)
        let first = try node.start(site: "first", value: .int(1))
        _ = node.poll(now: .zero)
        let second = try node.start(site: "again", value: .int(2))
        let o = node.poll(now: ms(1))
        let cmd = sneaky.handles[0].command
        #expect(o.events.failures == [OpFailure(op: "reuse", execution: second, reason: .commandInUse(cmd))])
        try sneaky.handles[0].complete(.int(10))
        let done = node.poll(now: ms(2))
        #expect(done.finished.map(\.id) == [first])
        #expect(done.finished.first?.result("out") == .int(10))
        _ = node.poll(now: ms(3))
        #expect(node.liveExecutions == 0 && node.pendingAsyncCount == 0)
    }

    @Test func aFloodOfEnvelopesCannotCrowdOutCompletions() throws {
        var b = ProgramBuilder("flood")
        b.site("in"); b.site("out")
        b.op("later", .component(slot: "math", op: "later"), inputs: ["x": "in"], outputs: ["y": "out"])
        let (node, math) = try makeNode(b.program) { $0.ingressCapacity = 4 }
        let exec = try node.start(site: "in", value: .int(1))
        _ = node.poll(now: .zero)
        let junk = Envelope(protocolTag: .nodeEngine, kind: WireKind.fill.rawValue, source: Self.mallory, destination: node.id)
        for _ in 0..<4 { try node.ingress.push(.envelope(junk)) }
        #expect(throws: IngressError.full(lane: .network, capacity: 4)) { try node.ingress.push(.envelope(junk)) }
        try math.handles[0].complete(.int(5))              // its own lane: still room
        let o = node.poll(now: ms(1))
        #expect(o.finished.map(\.id) == [exec] && o.finished.first?.result("out") == .int(5))
        #expect(o.events.map(\.event).contains(.ingressRejected(reason: "full (network lane)", count: 1)))
    }

    @Test func anHLCStampBeyondTheDriftBoundIsRefusedAndAnswered() throws {
        var b = ProgramBuilder("echo")
        b.site("in"); b.site("out")
        b.op("echo", .component(slot: "math", op: "double"), inputs: ["x": "in"], outputs: ["y": "out"])
        let (node, math) = try makeNode(b.program) { $0.maximumClockDrift = .seconds(1) }
        var env = Envelope(protocolTag: .nodeEngine, kind: WireKind.request.rawValue, source: Self.mallory,
                           destination: node.id, correlation: 9, payload: WireMessage.encodeCall(.op("echo"), [.int(1)]))
        env.stamp = HLCTimestamp(physical: 1_700_000_000_000_000_000 + 3_600_000_000_000, logical: 0)   // an hour ahead
        node.deliver(env)
        let o = node.poll(now: .zero)
        #expect(math.calls == 0)
        #expect(o.events.contains { if case .inboundRejected(Self.mallory?, let why) = $0.event { return why.contains("ahead") } else { return false } })
        let reply = try #require(o.outbound.first)
        #expect(reply.correlation == 9 && reply.flags.contains(.error))
        #expect(node.engine.hlc.current.physical < env.stamp.physical)     // not dragged forward
    }

    @Test func wireSendCarriesWhatIsLeftOfTheDeadline() throws {
        var b = ProgramBuilder("forward")
        b.site("in")
        b.syscall("forward", .wireSend, inputs: ["in": "in"], params: ["peer": .string("b"), "site": .string("s")])
        let (node, _) = try makeNode(b.program)
        node.addPeer(Self.b, name: "b")
        var request = Envelope(protocolTag: .nodeEngine, kind: WireKind.request.rawValue, source: Self.mallory,
                               destination: node.id, correlation: 3, payload: WireMessage.encodeCall(.site("in"), [.int(1)]))
        request.deadlineBudget = .milliseconds(700)
        node.deliver(request)
        let o = node.poll(now: .zero)
        let fill = try #require(o.outbound.first { $0.kind == WireKind.fill.rawValue })
        #expect(fill.deadlineBudget == .milliseconds(700))
    }

    @Test func busEventsOfSubscribedExecutionsAreInTheSameOutcome() throws {
        var b = ProgramBuilder("subs")
        b.site("in"); b.site("out"); b.site("failures", .string)
        b.op("f", .component(slot: "math", op: "fail"), inputs: ["x": "in"], outputs: ["y": "out"])
        b.subscribe(.opFailed, site: "failures")
        let (node, _) = try makeNode(b.program)
        let exec = try node.start(site: "in", value: .unit)
        let o = node.poll(now: .zero)
        let subscribed = try #require(o.finished.first { $0.id != exec })
        #expect(subscribed.result("failures")?.stringValue?.hasPrefix("opFailed(") == true)
        #expect(o.events.map(\.event).contains(.executionFinished(subscribed.id)))
    }

    @Test func anyLatchesOncePerExecutionByDefault() throws {
        var b = ProgramBuilder("any")
        b.site("a"); b.site("b"); b.site("first")
        b.syscall("any", .any, inputs: ["x": "a", "y": "b"], outputs: ["out": "first"], params: ["group": .string("g")])
        let (node, _) = try makeNode(b.program)
        let e1 = try node.start(site: "a", value: .int(1))
        let e2 = try node.start(site: "b", value: .int(2))
        let o = node.poll(now: .zero)
        #expect(o.finished.first { $0.id == e1 }?.result("first") == .int(1))
        #expect(o.finished.first { $0.id == e2 }?.result("first") == .int(2))
        _ = node.poll(now: ms(1))
        #expect(node.context.syscalls.anyFiredInExecution.isEmpty)   // freed with the executions
    }

    @Test func aClientThatGoesQuietIsNeverDeclaredDown() throws {
        var b = ProgramBuilder("server")
        b.site("in"); b.site("out")
        b.op("echo", .component(slot: "math", op: "double"), inputs: ["x": "in"], outputs: ["y": "out"])
        let (node, _) = try makeNode(b.program)
        for (i, t) in [0, 10, 20, 30].enumerated() {
            node.deliver(Envelope(protocolTag: .nodeEngine, kind: WireKind.request.rawValue, source: Self.mallory,
                                  destination: node.id, correlation: UInt64(i + 1), sequence: UInt64(i + 1),
                                  payload: WireMessage.encodeCall(.op("echo"), [.int(1)])))
            _ = node.poll(now: ms(Int64(t)))
        }
        let later = node.poll(now: ms(600_000))
        #expect(!later.events.contains { [.peerSuspected(Self.mallory), .peerDown(Self.mallory)].contains($0.event) })
        #expect(node.context.net.suspicion.count == 0 && !node.context.net.monitor.isWatched(Self.mallory))
        #expect(node.context.peers.governor.status(of: Self.mallory) == nil)
    }

    @Test func perPeerStateIsEvictedAfterTheIdleTimeout() throws {
        let node = try Self.caller { $0.peerIdleTimeout = .seconds(10); $0.heartbeatInterval = .seconds(1) }
        try node.start(site: "in", value: .int(1))
        let request = try #require(node.poll(now: .zero).outbound.first)
        node.deliver(Self.response(from: Self.b, to: node, correlation: request.correlation, [.int(1)]))
        _ = node.poll(now: ms(1))
        let target = RttTarget(peer: Self.b, endpoint: "op echo")
        #expect(node.context.net.rtt.estimate(for: target) != nil && node.context.net.monitor.isWatched(Self.b))
        var evicted = false
        var t: Int64 = 1
        while t <= 12_000 {   // the driver polls at every next deadline; heartbeats are answered
            t += 1000
            let o = node.poll(now: ms(t))
            for hb in o.outbound where hb.kind == WireKind.heartbeat.rawValue {
                node.deliver(Envelope(protocolTag: .nodeEngine, kind: WireKind.heartbeatAck.rawValue, source: Self.b,
                                      destination: node.id, correlation: hb.correlation))
            }
            evicted = evicted || o.events.contains { $0.event == .peerEvicted(Self.b) }
        }
        #expect(evicted)
        #expect(node.context.net.rtt.estimate(for: target) == nil)
        #expect(!node.context.net.monitor.isWatched(Self.b) && node.context.net.suspicion.count == 0)
        #expect(node.context.peers.governor.status(of: Self.b) == nil && node.context.peers.gate.peerCount == 0)
    }

    @Test func dueRequestsExpireFromAHeapEarliestFirst() {
        var r = RequestTracker(capacity: 8)
        let late = r.begin(.init(command: CommandID(1), peer: Self.b, endpoint: "x", sentAt: .zero, expiresAt: ms(30), chain: nil))!
        let early = r.begin(.init(command: CommandID(2), peer: Self.b, endpoint: "x", sentAt: .zero, expiresAt: ms(10), chain: nil))!
        #expect(r.nextExpiry == ms(10))
        #expect(r.expire(now: ms(5)).isEmpty)
        #expect(r.expire(now: ms(40)).map(\.id) == [early, late])
        #expect(r.count == 0 && r.nextExpiry == nil)
    }

    @Test func idleConnectionsGetHeartbeatsAndAPeerCutOffIsDownWithinTheLivenessBound() async throws {
        let sim = try await Simulation(names: ["a", "b"], seed: 7, configuration: {
            var c = Simulation.Configuration()
            c.node.heartbeatInterval = .milliseconds(100)
            c.node.livenessBound = .seconds(1)
            return c
        }()) { name, node in
            try node.install(EchoComponent(), at: "echo")
            try node.install(MathComponent(), at: "math")
            try node.install(meshProgram(peers: name == "a" ? ["b"] : [], timeoutMs: 60_000))
        }
        let a = sim.node("a"), b = sim.node("b")
        try a.start(site: "in", value: .int(1))
        sim.run(for: .seconds(2))                        // one call, then an idle connection
        let heartbeats = sim.trace.filter { $0.contains("a send kind=5 to=b") }.count
        #expect(heartbeats >= 10)
        #expect(sim.trace.filter { $0.contains("b send kind=6 to=a") }.count == heartbeats)
        #expect(!sim.trace.contains { $0.contains("peerDown") || $0.contains("peerSuspected") })
        #expect(a.context.peers.governor.status(of: b.id) == .up)

        let held = try a.start(site: "hold-b", value: .int(2))   // parks on b for up to 60 s
        sim.run(for: .milliseconds(20))
        sim.faults.partition("a", "b")
        let cut = sim.clock.now()
        sim.run(for: .seconds(2))
        let line = try #require(sim.trace.first { $0.contains("a bus opFailed(op `hold-b` in \(held): peer down") })
        let failedAt = try #require(Int64(line.split(separator: " ")[0].dropFirst(2).dropLast(2)))
        #expect(Duration.milliseconds(failedAt) - Duration.nanoseconds(Int64(cut.nanoseconds)) <= .milliseconds(1100))
        #expect(sim.trace.contains { $0.contains("a bus peerDown(b)") })
        #expect(!sim.trace.contains { $0.contains("b bus peerDown(a)") })   // b never called a
        await sim.shutdown()
    }
}
