import Spindle
import Synchronization

/// A component that doubles integers (the node engine's worked example).
final class Doubler: Component {
    let signatures = [OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)])]
    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        .immediate(OpOutputs(.int((inputs[0]?.intValue ?? 0) * 2)))
    }
}

/// Collects the answers a driver reports and wakes the demo when all have arrived.
final class Answers: Sendable {
    private let state = Mutex<(values: [Int64], failures: Int, waiter: CheckedContinuation<Void, Never>?, want: Int)>(([], 0, nil, 0))

    func add(_ outcome: PollOutcome) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            for f in outcome.finished {
                if let v = f.result("answer")?.intValue { s.values.append(v) } else { s.failures += 1 }
            }
            guard s.values.count + s.failures >= s.want, let w = s.waiter else { return nil }
            s.waiter = nil
            return w
        }
        waiter?.resume()
    }

    /// Waits for `count` finished executions or the deadline, whichever comes first.
    func wait(for count: Int, timeout: Duration, on loop: EventLoop) async -> (values: [Int64], failures: Int) {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                s.want = count
                if s.values.count + s.failures >= count { return true }
                s.waiter = c
                return false
            }
            if ready { c.resume(); return }
            loop.scheduleTimer(after: timeout) { [self] in
                let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
                    defer { s.waiter = nil }
                    return s.waiter
                }
                w?.resume()
            }
        }
        return state.withLock { ($0.values, $0.failures) }
    }
}

/// Two nodes on one event loop exchange 200 requests over TCP loopback: node a asks node b to
/// double numbers through a `WireCall`; b answers with `Reply`.
func nodesStep(_ log: DemoLog) async throws -> String {
    let loop = try EventLoop(name: "demo-nodes")
    var tcpConfig = TCPTransport.Configuration()
    tcpConfig.logger = quietLogger("demo.nodes.tcp")
    let tcp = TCPTransport(loop: loop, configuration: tcpConfig)
    var drivers: [NodeDriver] = []
    func tearDown() async {
        for d in drivers { await d.shutdown() }
        await tcp.shutdown()
        await loop.shutdown()
    }
    do {
        var server = ProgramBuilder("doubler")
        server.site("ask", .int)
        server.site("doubled", .int)
        server.op("double", .component(slot: "math", op: "double"), inputs: ["x": "ask"], outputs: ["y": "doubled"])
        server.syscall("reply", .reply, inputs: ["in": "doubled"])
        let b = Node(id: .generate())
        try b.install(Doubler(), at: "math")
        try b.install(server.program)
        let bID = b.id
        let driverB = try await NodeDriver.start(node: b, on: loop, transport: tcp,
                                                 configuration: .init(listenAddress: .tcp(host: "127.0.0.1", port: 0)))
        drivers.append(driverB)
        guard let bAddress = driverB.listenAddress else { throw DemoError("node b has no listen address") }
        log.say("node b (\(bID)) listens on \(bAddress)")

        var client = ProgramBuilder("asker")
        client.site("question", .int)
        client.site("answer", .int)
        client.site("problem", .string)
        client.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer", "error": "problem"],
                       params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(5000)])
        let a = Node(id: .generate())
        try a.install(client.program)
        a.addPeer(bID, name: "b", addresses: [bAddress])
        let answers = Answers()
        var config = NodeDriver.Configuration()
        config.onOutcome = { answers.add($0) }
        let driverA = try await NodeDriver.start(node: a, on: loop, transport: tcp, configuration: config)
        drivers.append(driverA)

        let count = 200
        for i in 1...count { try driverA.start(site: "question", value: .int(Int64(i))) }
        let got = await answers.wait(for: count, timeout: .seconds(20), on: loop)
        let rtt = try await driverA.withNode { node in
            node.context.net.rtt.estimate(for: RttTarget(peer: bID, endpoint: "site ask"))
        }
        if let rtt { log.say("RTT estimate a→b after \(rtt.samples) samples: \(Int(rtt.srtt / 1000)) µs (all 200 in flight at once)") }
        await tearDown()
        guard got.failures == 0, got.values.sorted() == (1...count).map({ Int64($0 * 2) }) else {
            throw DemoError("expected \(count) doubled answers, got \(got.values.count) answers and \(got.failures) failures")
        }
        return "\(count) requests a→b over TCP, every answer doubled"
    } catch {
        await tearDown()
        throw error
    }
}
