// A node-engine node for the cluster tests: a doubler (site `ask` → double → reply) served
// over SpindleTCP with a cluster key. Prints `node NODE-ID listening on ADDRESS` once it
// listens, and exits when its standard input closes.
//
//   ClusterNodeFixture --listen tcp://10.77.0.2:0 --key-file cluster.key
import SpindleEventLoop
import SpindleKernel
import SpindleNodeEngine
import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

/// Doubles an integer in an async op.
final class Doubler: Component {
    let signatures = [OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)], isAsync: true)]
    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        guard let x = try? inputs.value(of: Int64.self, at: "x") else { return .failed("x is not an int") }
        let handle = context.openCompletion()
        Task { try? handle.complete(.int(x * 2)) }
        return .async(handle.command)
    }
}

func argument(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

guard let listenText = argument("--listen"), let listen = try? Address(parsing: listenText),
      let keyFile = argument("--key-file") else {
    print("usage: ClusterNodeFixture --listen tcp://HOST:PORT --key-file FILE")
    exit(64)
}
let loop = try EventLoop(name: "cluster-node")
var config = TCPTransport.Configuration()
config.clusterKey = try ClusterKey(contentsOfFile: keyFile)
let tcp = TCPTransport(loop: loop, configuration: config)
var program = ProgramBuilder("doubler")
program.site("ask", .int); program.site("doubled", .int)
program.op("double", .component(slot: "math", op: "double"), inputs: ["x": "ask"], outputs: ["y": "doubled"])
program.syscall("reply", .reply, inputs: ["in": "doubled"])
let node = Node()
let id = node.id
try node.install(Doubler(), at: "math")
try node.install(program.program)
let driver = try await NodeDriver.start(node: node, on: loop, transport: tcp, configuration: .init(listenAddress: listen))
print("node \(id) listening on \(driver.listenAddress!)")
fflush(nil)
var byte: UInt8 = 0
while read(0, &byte, 1) > 0 {}
await driver.shutdown()
await tcp.shutdown()
await loop.shutdown()
