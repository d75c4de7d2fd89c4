import Spindle

/// A component that doubles integers (the node engine's worked example).
final class Doubler: Component {
    let signatures = [OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)])]
    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        do {
            return .immediate(OpOutputs(.int(try inputs.value(of: Int64.self, at: "x") * 2)))
        } catch {
            return .failed(error.description)
        }
    }
}

/// Two nodes on one event loop exchange 200 requests over TCP loopback: node a asks node b to
/// double numbers through a `WireCall`; b answers with `Reply`. The demo awaits each answer
/// with `call`, all 200 at once.
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
        let driverA = try await NodeDriver.start(node: a, on: loop, transport: tcp)
        drivers.append(driverA)

        let count = 200
        let got = await withTaskGroup(of: Result<Int64, NodeCallError>.self) { group in
            for i in 1...count {
                group.addTask {
                    do throws(NodeCallError) {
                        let answer: Int64 = try await driverA.call(site: "question", value: Int64(i), timeout: .seconds(20))
                        return .success(answer)
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var values: [Int64] = [], failures: [NodeCallError] = []
            for await r in group {
                switch r {
                case .success(let v): values.append(v)
                case .failure(let e): failures.append(e)
                }
            }
            return (values: values, failures: failures)
        }
        let rtt = try await driverA.withNode { node in
            node.roundTrip(to: bID, endpoint: "site ask")
        }
        if let rtt { log.say("RTT estimate a→b after \(rtt.samples) samples: \(Int(rtt.smoothed / .microseconds(1))) µs (all 200 in flight at once)") }
        await tearDown()
        guard got.failures.isEmpty, got.values.sorted() == (1...count).map({ Int64($0 * 2) }) else {
            let first = got.failures.first.map { ": \($0)" } ?? ""
            throw DemoError("expected \(count) doubled answers, got \(got.values.count) answers and \(got.failures.count) failures\(first)")
        }
        return "\(count) requests a→b over TCP, every answer doubled"
    } catch {
        await tearDown()
        throw error
    }
}
