import SpindleEventLoop
import SpindleNodeEngine
import SpindleTCP

/// Doubles an integer, later: an async op completed from another task.
final class Doubler: Component {
    let signatures = [OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)], isAsync: true)]
    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        guard let x = try? inputs.value(of: Int64.self, at: "x") else { return .failed("x is not an int") }
        let handle = context.openCompletion()
        Task { try? handle.complete(.int(x * 2)) }
        return .async(handle.command)
    }
}

func askTheDoubler() async throws -> Int64 {
    let loop = try EventLoop()
    let tcp = TCPTransport(loop: loop)
    var server = ProgramBuilder("doubler")          // node b: site `ask` → double → reply
    server.site("ask", .int); server.site("doubled", .int)
    server.op("double", .component(slot: "math", op: "double"), inputs: ["x": "ask"], outputs: ["y": "doubled"])
    server.syscall("reply", .reply, inputs: ["in": "doubled"])
    let b = Node()
    let bID = b.id                                  // read it before `b` goes to its driver
    try b.install(Doubler(), at: "math"); try b.install(server.program)
    let driverB = try await NodeDriver.start(node: b, on: loop, transport: tcp,
                                             configuration: .init(listenAddress: .tcp(host: "127.0.0.1", port: 0)))
    var client = ProgramBuilder("asker")            // node a: site `question` → b's `ask`
    client.site("question", .int); client.site("answer", .int)
    client.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer"],
                   params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(30_000)])
    let a = Node()
    try a.install(client.program)
    a.addPeer(bID, name: "b", addresses: [driverB.listenAddress!])
    let driverA = try await NodeDriver.start(node: a, on: loop, transport: tcp)
    let answer: Int64 = try await driverA.call(site: "question", value: Int64(21))   // 42
    await driverA.shutdown(); await driverB.shutdown(); await tcp.shutdown(); await loop.shutdown()
    return answer
}
