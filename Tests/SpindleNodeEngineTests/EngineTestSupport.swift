import SpindleEventLoop
import SpindleKernel
import SpindleTCP
import Synchronization
import Testing
@testable import SpindleNodeEngine

/// Ops that misbehave the way issue 22's defects need: an op not declared async that parks,
/// and an op that returns the same command id every time.
final class SneakyComponent: Component {
    let signatures = [OpSignature("park", inputs: [PortSpec("x")], outputs: [PortSpec("y")]),
                      OpSignature("reuse", inputs: [PortSpec("x")], outputs: [PortSpec("y")], isAsync: true)]
    var handles: [CompletionHandle] = []

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        if op == 1, let first = handles.first { return .async(first.command) }
        let h = context.openCompletion()
        handles.append(h)
        return .async(h.command)
    }
}

struct Order: Codable, Equatable, Sendable {
    struct Line: Codable, Equatable, Sendable {
        var item: String
        var quantity: Int
    }

    enum Delivery: Codable, Equatable, Sendable {
        case pickup
        case courier(address: String, express: Bool)
    }

    var id: UInt64
    var lines: [Line]
    var note: String?
    var delivery: Delivery
    var tags: [String: Int]
}

struct Quote: Codable, Equatable, Sendable {
    var order: UInt64
    var total: Double
    var items: Int
}

/// Parks every `hold` until the test completes it, and tells the test each time it parks.
final class ParkingComponent: Component, @unchecked Sendable {
    // @unchecked Sendable: only `parked` (an AsyncStream, itself Sendable) is used off the
    // node's thread; the component is otherwise confined to the node.
    let signatures = [OpSignature("hold", inputs: [PortSpec("x")], outputs: [PortSpec("y")], isAsync: true)]
    /// A parked op: its handle and the deadline budget its request carried.
    struct Parked: Sendable {
        var handle: CompletionHandle
        var budget: Duration?
    }

    let parked = AsyncStream<Parked>.makeStream()

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        let h = context.openCompletion()
        parked.continuation.yield(Parked(handle: h, budget: context.current.inbound.remainingBudget))
        return .async(h.command)
    }

    /// The next parked op.
    func next() async -> Parked? {
        var it = parked.stream.makeAsyncIterator()
        return await it.next()
    }
}

/// Prices an order (typed input and output) and splits pairs into two ports.
final class ShopComponent: Component {
    struct Pair: Codable { var a: Value; var b: Value }

    let signatures = [
        OpSignature("price", inputs: [PortSpec("order", .record)], outputs: [PortSpec("quote", .record)]),
        OpSignature("split", inputs: [PortSpec("pair", .record)], outputs: [PortSpec("a"), PortSpec("b")]),
    ]

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        do {
            if op == 0 {
                let order = try inputs.value(of: Order.self, at: "order")
                let items = order.lines.reduce(0) { $0 + $1.quantity }
                return .immediate(try OpOutputs(encoding: Quote(order: order.id, total: Double(items) * 2.5, items: items)))
            }
            let pair = try inputs.value(of: Pair.self, at: "pair")
            return .immediate(OpOutputs([pair.a, pair.b]))
        } catch {
            return .failed("\(error)")
        }
    }
}

/// The server side of the driver tests: `ask` doubles through `math.double` and replies;
/// ops `add` (two int inputs), `hold` (parks until completed), `price` (user types).
func serverProgram() -> Program {
    var b = ProgramBuilder("server")
    b.site("ask", .int); b.site("doubled", .int)
    b.op("double", .component(slot: "math", op: "double"), inputs: ["x": "ask"], outputs: ["y": "doubled"])
    b.syscall("reply", .reply, inputs: ["in": "doubled"])
    b.site("l", .int); b.site("r", .int); b.site("sum", .int)
    b.op("add", .component(slot: "math", op: "add"), inputs: ["a": "l", "b": "r"], outputs: ["sum": "sum"])
    b.site("req"); b.site("held")
    b.op("hold", .component(slot: "park", op: "hold"), inputs: ["x": "req"], outputs: ["y": "held"])
    b.site("order", .record); b.site("quote", .record)
    b.op("price", .component(slot: "shop", op: "price"), inputs: ["order": "order"], outputs: ["quote": "quote"])
    b.syscall("answer", .reply, inputs: ["in": "quote"])
    return b.program
}

/// The client side: one site per kind of call to the peer named `server`.
func clientProgram(timeoutMs: Int64 = 10_000) -> Program {
    var b = ProgramBuilder("client")
    b.site("question", .int); b.site("answer", .int)
    b.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer"],
              params: ["peer": .string("server"), "site": .string("ask"), "timeoutMs": .int(timeoutMs)])
    b.site("pair", .record); b.site("a"); b.site("b"); b.site("sum")
    b.op("split", .component(slot: "shop", op: "split"), inputs: ["pair": "pair"], outputs: ["a": "a", "b": "b"])
    b.syscall("add", .wireCall, inputs: ["a": "a", "b": "b"], outputs: ["out": "sum"],
              params: ["peer": .string("server"), "op": .string("add"), "timeoutMs": .int(timeoutMs)])
    b.site("wait"); b.site("waited")
    b.syscall("hold", .wireCall, inputs: ["in": "wait"], outputs: ["out": "waited"],
              params: ["peer": .string("server"), "op": .string("hold"), "timeoutMs": .int(timeoutMs)])
    b.site("order", .record); b.site("quote", .record)
    b.syscall("price", .wireCall, inputs: ["in": "order"], outputs: ["out": "quote"],
              params: ["peer": .string("server"), "site": .string("order"), "timeoutMs": .int(timeoutMs)])
    return b.program
}

/// A server and a client node, each with a driver on its own loop and transport.
struct DriverPair {
    enum Kind { case inProcess, tcp }

    let server: NodeDriver
    let client: NodeDriver
    let serverID: NodeID
    let parking: ParkingComponent
    let loops: [EventLoop]
    let transports: [any Transport]

    /// Builds the pair, runs `body`, and shuts everything down whatever happens.
    /// Unless `node` says otherwise, peers are declared down only after a minute of silence:
    /// these tests are not about failure detection, and a loaded machine running the whole
    /// suite can stall a loop for seconds.
    static func with(_ kind: Kind, timeoutMs: Int64 = 60_000, node: (inout NodeConfiguration) -> Void = { _ in },
                     driver: (inout NodeDriver.Configuration) -> Void = { _ in },
                     _ body: (DriverPair) async throws -> Void) async throws {
        let serverLoop = try EventLoop(name: "engine-test-srv")
        let clientLoop = try EventLoop(name: "engine-test-cli")
        let serverTransport: any Transport, clientTransport: any Transport, listen: Address
        switch kind {
        case .inProcess:
            let t = InProcessTransport()
            serverTransport = t
            clientTransport = t
            listen = .inproc(name: "engine-test-\(UInt64.random(in: 0 ... .max))")
        case .tcp:
            serverTransport = TCPTransport(loop: serverLoop)
            clientTransport = TCPTransport(loop: clientLoop)
            listen = .tcp(host: "127.0.0.1", port: 0)
        }
        var nc = NodeConfiguration()
        nc.livenessBound = .seconds(60)
        nc.suspicion.acceptablePause = .seconds(60)
        node(&nc)
        var dc = NodeDriver.Configuration()
        driver(&dc)
        var serverConfig = dc
        serverConfig.listenAddress = listen
        let parking = ParkingComponent()
        var started: [NodeDriver] = []
        func tearDown() async {
            for d in started { await d.shutdown() }
            await clientTransport.shutdown()
            if serverTransport !== clientTransport { await serverTransport.shutdown() }
            await clientLoop.shutdown()
            await serverLoop.shutdown()
        }
        do {
            let serverNode = Node(configuration: nc)
            try serverNode.install(MathComponent(), at: "math")
            try serverNode.install(parking, at: "park")
            try serverNode.install(ShopComponent(), at: "shop")
            try serverNode.install(serverProgram())
            let serverID = serverNode.id
            let server = try await NodeDriver.start(node: serverNode, on: serverLoop, transport: serverTransport,
                                                    configuration: serverConfig)
            started.append(server)
            let address = try #require(server.listenAddress)
            let clientNode = Node(configuration: nc)
            try clientNode.install(ShopComponent(), at: "shop")
            try clientNode.install(clientProgram(timeoutMs: timeoutMs))
            clientNode.addPeer(serverID, name: "server", addresses: [address])
            let client = try await NodeDriver.start(node: clientNode, on: clientLoop, transport: clientTransport,
                                                    configuration: dc)
            started.append(client)
            try await body(DriverPair(server: server, client: client, serverID: serverID, parking: parking,
                                      loops: [serverLoop, clientLoop], transports: [serverTransport, clientTransport]))
        } catch {
            await tearDown()
            throw error
        }
        await tearDown()
    }
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out: \(what)" }
}

/// Runs `body`, failing the test (and throwing) when it has not finished after `seconds`.
func within<T: Sendable>(_ seconds: Double, _ what: String,
                         _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        guard let value = first else {
            Issue.record("timed out after \(seconds) s: \(what)")
            throw TimedOut(what: what)
        }
        return value
    }
}

extension Array where Element == BusRecord {
    var failures: [OpFailure] {
        compactMap { if case .opFailed(let f) = $0.event { return f } else { return nil } }
    }
}
