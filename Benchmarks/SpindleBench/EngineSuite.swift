import CBaselines
import Spindle
import Synchronization

/// Node engine: op dispatch rate, ingress push cost, request/response (`call`) between two
/// driven nodes.
let engineSuite = BenchSuite(name: "engine") { reporter in
    try engineChain(reporter)
    try await engineIngressPush(reporter)
    try await enginePingPongInProcess(reporter)
    try await enginePingPongTCP(reporter)
}

/// Adds one to its input: the cheapest useful component op.
private final class Increment: Component {
    let signatures = [OpSignature("inc", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)])]

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        if case .int(let v)? = inputs[0] { return .immediate(OpOutputs(.int(v &+ 1))) }
        return .absorb
    }
}

/// Echoes its input (the server side of the ping-pong).
private final class Echo: Component {
    let signatures = [OpSignature("echo", inputs: [PortSpec("x")], outputs: [PortSpec("y")])]

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        .immediate(OpOutputs(inputs[0] ?? .unit))
    }
}

private func engineChain(_ reporter: BenchReporter) throws {
    let length = 1000
    var b = ProgramBuilder("chain")
    for i in 0...length { b.site("s\(i)", .int) }
    for i in 0..<length {
        b.op("op\(i)", .component(slot: "inc", op: "inc"), inputs: ["x": "s\(i)"], outputs: ["y": "s\(i + 1)"])
    }
    let node = Node(configuration: NodeConfiguration(), clock: ManualClock())
    try node.install(Increment(), at: "inc")
    try node.install(b.program)
    var check: Int64 = 0
    let perRun = try measure(iterations: 200) { n in
        for _ in 0..<n {
            let exec = try node.start(site: "s0", value: .int(0))
            let outcome = node.poll(now: .zero)
            check &+= node.execution(exec)?.result("s\(length)")?.intValue ?? -1
            blackHole(outcome.opsFired)
        }
    }
    blackHole(check)
    let nsPerOp = perRun * 1e9 / Double(length)
    reporter.report(BenchResult(suite: "engine", benchmark: "chain of 1000 immediate ops", value: nsPerOp, unit: "ns/op",
                                baseline: "target", baselineValue: 200, higherIsBetter: false))
}

private func engineIngressPush(_ reporter: BenchReporter) async throws {
    var c = NodeConfiguration()
    c.ingressCapacity = 1 << 22
    let node = Node(configuration: c, clock: ManualClock())
    let ingress = node.ingress
    let pushes = 1_000_000
    let done = Atomic<Bool>(false)
    // One producer thread pushes while this task drains with polls, as a driver would.
    let producer = Task.detached { () -> Double in
        let t0 = SystemClock().now()
        for i in 0..<pushes {
            try? ingress.push(.completion(CommandID(UInt64(i) | 1 << 63), OpOutputs()))
        }
        let dt = SystemClock().now() - t0
        return Double(dt.nanosecondsClamped) / Double(pushes)
    }
    Task.detached {
        _ = await producer.value
        done.store(true, ordering: .releasing)
    }
    var drained = 0
    while !done.load(ordering: .acquiring) || !ingress.isEmpty {
        drained += node.poll(now: .zero).events.count
        await Task.yield()
    }
    let nsPerPush = await producer.value
    blackHole(drained)
    reporter.report(BenchResult(suite: "engine", benchmark: "ingress push from another thread", value: nsPerPush,
                                unit: "ns", baseline: "target", baselineValue: 100, higherIsBetter: false))

    // Batches of 1024 pushes from another thread, drained by the node between batches (no
    // lock contention, queue kept short): the cost of the push itself.
    let quiet = Node(configuration: c, clock: ManualClock())
    let quietIngress = quiet.ingress
    var quietNanos: Int64 = 0
    let batches = 500, batch = 1024
    for b in 0..<batches {
        quietNanos += await Task.detached { () -> Int64 in
            let t0 = SystemClock().now()
            for i in 0..<batch {
                try? quietIngress.push(.completion(CommandID(UInt64(b * batch + i) | 1 << 63), OpOutputs()))
            }
            return (SystemClock().now() - t0).nanosecondsClamped
        }.value
        blackHole(quiet.poll(now: .zero).events.count)
    }
    let alone = Double(quietNanos) / Double(batches * batch)
    reporter.report(BenchResult(suite: "engine", benchmark: "ingress push, batches of 1024, no contention", value: alone,
                                unit: "ns", baseline: "target", baselineValue: 100, higherIsBetter: false))
}

/// Request/response rates between a client and a server node, each with a driver: the
/// client awaits `call` for one request at a time, from a task that prefers the client's
/// loop as its executor, then from a plain task (which hops to the pool and back per call).
private func pingPong(serverLoop: EventLoop, clientLoop: EventLoop, serverTransport: any Transport,
                      clientTransport: any Transport, listen: Address, trips: Int)
    async throws -> (pinned: Double, pool: Double, latencies: Latencies) {
    let serverID = NodeID.generate()
    var sp = ProgramBuilder("server")
    sp.site("req"); sp.site("res")
    sp.op("echo", .component(slot: "echo", op: "echo"), inputs: ["x": "req"], outputs: ["y": "res"])
    let server = Node(id: serverID)
    try server.install(Echo(), at: "echo")
    try server.install(sp.program)
    let serverDriver = try await NodeDriver.start(node: server, on: serverLoop, transport: serverTransport,
                                                  configuration: .init(listenAddress: listen))
    let bound = serverDriver.listenAddress ?? listen

    var cp = ProgramBuilder("client")
    cp.site("in"); cp.site("got")
    cp.syscall("call", .wireCall, inputs: ["in": "in"], outputs: ["out": "got"],
               params: ["peer": .string("server"), "op": .string("echo"), "timeoutMs": .int(10_000)])
    let client = Node()
    try client.install(cp.program)
    client.addPeer(serverID, name: "server", addresses: [bound])
    let clientDriver = try await NodeDriver.start(node: client, on: clientLoop, transport: clientTransport)

    let executor = clientDriver.callerExecutor
    var answered = 0
    let pinned = await measureAsync(iterations: trips, rounds: 3) { n in
        answered += await withTaskExecutorPreference(executor) {
            var ok = 0
            for _ in 0..<n {
                if case .int(1)? = try? await clientDriver.call(site: "in", value: .int(1)) { ok += 1 }
            }
            return ok
        }
    }
    let pool = await measureAsync(iterations: trips, rounds: 3) { n in
        for _ in 0..<n {
            if case .int(1)? = try? await clientDriver.call(site: "in", value: .int(1)) { answered += 1 }
        }
    }
    // Each call timed on its own, from the client's loop as executor.
    let latencies = await withTaskExecutorPreference(executor) {
        var l = Latencies()
        let clock = SystemClock()
        for _ in 0..<trips {
            let t0 = clock.now()
            if case .int(1)? = try? await clientDriver.call(site: "in", value: .int(1)) { answered += 1 }
            l.record(clock.now() - t0)
        }
        return l
    }
    blackHole(answered)
    if answered != trips * 9 { printError("engine ping-pong: \(trips * 9 - answered) calls did not answer 1") }
    await clientDriver.shutdown()
    await serverDriver.shutdown()
    return (1 / pinned, 1 / pool, latencies)
}

private func enginePingPongInProcess(_ reporter: BenchReporter) async throws {
    let loop = try EventLoop(name: "bench-engine")
    let transport = InProcessTransport()
    let rate = try await pingPong(serverLoop: loop, clientLoop: loop, serverTransport: transport,
                                  clientTransport: transport, listen: .inproc(name: "bench-engine-server"), trips: 2000)
    reporter.report(BenchResult(suite: "engine", benchmark: "request/response, in-process (2 nodes, 1 loop)",
                                value: rate.pinned, unit: "rt/s", higherIsBetter: true))
    await transport.shutdown()
    await loop.shutdown()
}

private func enginePingPongTCP(_ reporter: BenchReporter) async throws {
    let trips = 2000
    let serverLoop = try EventLoop(name: "bench-engine-srv")
    let clientLoop = try EventLoop(name: "bench-engine-cli")
    let serverTransport = TCPTransport(loop: serverLoop)
    let clientTransport = TCPTransport(loop: clientLoop)
    let rate = try await pingPong(serverLoop: serverLoop, clientLoop: clientLoop, serverTransport: serverTransport,
                                  clientTransport: clientTransport, listen: .tcp(host: "127.0.0.1", port: 0), trips: trips)
    await clientTransport.shutdown()
    await serverTransport.shutdown()
    await clientLoop.shutdown()
    await serverLoop.shutdown()
    var cRates: [Double] = []
    for _ in 0..<3 {
        let ns = cbaselines_net_pingpong(UInt64(trips), 64)
        if ns > 0 { cRates.append(Double(trips) / (Double(ns) / 1e9)) }
    }
    let c = cRates.isEmpty ? nil : median(cRates)
    var cNanos = [UInt64](repeating: 0, count: trips)
    let cStatus = cNanos.withUnsafeMutableBufferPointer {
        cbaselines_net_pingpong_latencies(UInt64(trips), 64, $0.baseAddress)
    }
    reporter.report(BenchResult(suite: "engine", benchmark: "request/response, tcp loopback",
                                value: rate.pinned, unit: "rt/s", baseline: "C libuv ping-pong 64 B",
                                baselineValue: c, higherIsBetter: true))
    reporter.report(BenchResult(suite: "engine", benchmark: "request/response, tcp loopback, caller off-loop",
                                value: rate.pool, unit: "rt/s", baseline: "C libuv ping-pong 64 B",
                                baselineValue: c, higherIsBetter: true))
    reporter.reportLatency(suite: "engine", benchmark: "request/response, tcp loopback, latency", rate.latencies,
                           baseline: cStatus >= 0 ? ("C libuv ping-pong 64 B", Latencies(nanoseconds: cNanos)) : nil)
}
