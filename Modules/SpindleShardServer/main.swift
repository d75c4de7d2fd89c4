// spindle-shard: serves one SpindleRunner shard to a coordinator over TCP.
//
//   spindle-shard --coordinator tcp://127.0.0.1:7400 --shard 2 --shards 4 \
//                 [--model colony|idle] [--seed 42] [--nodes 512] [--agents 128] [--chords 1] \
//                 [--virtual-nodes 256] [--key-file F]
//
// With --key-file (or SPINDLE_KEY_FILE, which a host agent with a cluster key sets) the
// connection to the coordinator authenticates with that cluster key.
// Started by a host mesh, `--shard` and `--shards` default to SPINDLE_RANK + 1 and
// SPINDLE_WORLD_SIZE, and the proc announces itself ready to its agent once it has said hello
// to the coordinator. Exit status: 0 when the coordinator said stop, 1 when the connection was
// lost, 2 for bad arguments, 3 when the coordinator cannot be reached.
import Logging
import SpindleHostMesh
import SpindleKernel
import SpindleRunner
import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

func fail(_ status: Int32, _ message: String) -> Never {
    var line = Array("spindle-shard: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(status)
}

/// The command line, parsed; errors name the option.
struct Options {
    var coordinator: Address?
    var shard: UInt64?
    var shards: Int?
    var model = "colony"
    var seed: UInt64 = 42
    var nodes = 512
    var agents = 128
    var chords = 1
    var virtualNodes = 256
    var keyFile: String?

    init(_ args: [String]) {
        var i = 0
        func value(_ name: String) -> String {
            i += 1
            guard i < args.count else { fail(2, "\(name) needs a value") }
            return args[i]
        }
        func number<T: FixedWidthInteger>(_ name: String) -> T {
            let text = value(name)
            guard let v = T(text), v >= 0 else { fail(2, "\(name): \"\(text)\" is not a non-negative number") }
            return v
        }
        while i < args.count {
            let a = args[i]
            switch a {
            case "--coordinator":
                let text = value(a)
                do { coordinator = try Address(parsing: text) } catch { fail(2, "--coordinator: \(error)") }
            case "--shard": shard = number(a)
            case "--shards": shards = number(a)
            case "--model": model = value(a)
            case "--seed": seed = number(a)
            case "--nodes": nodes = number(a)
            case "--agents": agents = number(a)
            case "--chords": chords = number(a)
            case "--virtual-nodes": virtualNodes = number(a)
            case "--key-file": keyFile = value(a)
            default: fail(2, "unknown argument \"\(a)\"")
            }
            i += 1
        }
    }
}

var options = Options(Array(CommandLine.arguments.dropFirst()))
let mesh: ProcEnvironment? = getenv(ProcEnvironment.rankVariable) == nil ? nil : {
    do { return try ProcEnvironment.current() } catch { fail(2, "\(error)") }
}()
if let mesh {
    options.shard = options.shard ?? UInt64(mesh.rank + 1)
    options.shards = options.shards ?? mesh.worldSize
}
guard let coordinator = options.coordinator else { fail(2, "--coordinator is required") }
guard let shardNumber = options.shard, shardNumber >= 1 else { fail(2, "--shard (1-based) is required") }
guard let shardCount = options.shards, shardCount >= Int(shardNumber) else {
    fail(2, "--shards is required and must be at least --shard")
}

let id = ShardID(shardNumber)
let placement = ShardPlacement(shards: (1...shardCount).map { ShardID(UInt64($0)) }, virtualNodes: options.virtualNodes)
let shard: any Shard
switch options.model {
case "colony":
    shard = ColonyShard(id: id, configuration: ColonyConfiguration(
        seed: options.seed, nodeCount: options.nodes, agentCount: options.agents, chordsPerNode: options.chords),
        placement: placement)
case "idle":
    shard = IdleShard(id: id)
default:
    fail(2, "--model: unknown model \"\(options.model)\" (colony or idle)")
}

var tcpConfiguration = TCPTransport.Configuration()
if let keyFile = options.keyFile ?? mesh?.keyFile {
    do { tcpConfiguration.clusterKey = try ClusterKey(contentsOfFile: keyFile) } catch { fail(2, "--key-file: \(error)") }
}
let transport: TCPTransport
do { transport = try TCPTransport(loopCount: 1, configuration: tcpConfiguration) } catch {
    fail(3, "cannot start the event loop: \(error)")
}
let host: ShardHost
do {
    host = try await ShardHost.serve(shard, coordinator: coordinator, transport: transport, execution: .transportThread)
} catch {
    await transport.shutdown()
    fail(3, "\(error)")
}
var meshProc: MeshProc? = nil
if let mesh {
    do {
        let proc = try await MeshProc.connect(environment: mesh, transport: transport)
        try proc.announceReady()
        meshProc = proc
    } catch {
        await host.shutdown()
        await transport.shutdown()
        fail(3, "cannot announce readiness to the host agent: \(error)")
    }
}
let ending = await host.waitUntilDone()
await host.shutdown()
meshProc?.close()
await transport.shutdown()
exit(ending == .stopped ? 0 : 1)
