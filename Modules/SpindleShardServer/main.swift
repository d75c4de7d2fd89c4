// spindle-shard: serves one SpindleRunner shard to a coordinator over TCP.
//
//   spindle-shard --coordinator tcp://127.0.0.1:7400 --shard 2 --shards 4 \
//                 [--model colony|idle] [--seed 42] [--nodes 512] [--agents 128] [--chords 1] \
//                 [--placement hashed|ranges] [--virtual-nodes 256] [--key-file F]
//
// With --key-file (or SPINDLE_KEY_FILE, which a host agent with a cluster key sets) the
// connection to the coordinator authenticates with that cluster key.
// Started by a host mesh, `--shard` and `--shards` default to SPINDLE_RANK + 1 and
// SPINDLE_WORLD_SIZE, and the proc announces itself ready to its agent once it has said hello
// to the coordinator. It runs under swift-service-lifecycle: a ServiceGroup of the transport
// and the shard server (ShardService.swift), with SIGTERM and SIGINT as graceful-shutdown
// signals. Exit status: 0 when the coordinator said stop or on SIGTERM/SIGINT (the request in
// flight finishes and its reply is sent first), 1 when the connection was lost (the reason on stderr),
// 64 for a bad command line (with a usage line; `--help` prints the options), 2 for a bad
// mesh environment or key file, 3 when the coordinator cannot be reached.
import ArgumentParser
import Logging
import ServiceLifecycle
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

extension Address: ExpressibleByArgument {
    public init?(argument: String) {
        guard let address = try? Address(parsing: argument) else { return nil }
        self = address
    }
}

/// The command line, parsed by swift-argument-parser; errors name the option and exit 64.
struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spindle-shard",
        abstract: "Serve one distributed-runner shard to a coordinator over TCP.",
        discussion: """
        Started by a host mesh, --shard and --shards default to SPINDLE_RANK + 1 and \
        SPINDLE_WORLD_SIZE, and SPINDLE_KEY_FILE names the cluster key. Exit status: 0 when the \
        coordinator said stop or on SIGTERM/SIGINT, 1 when the connection was lost, 64 for a \
        bad command line, 2 for a bad mesh environment or key file, 3 when the coordinator \
        cannot be reached.
        """)

    @Option(help: ArgumentHelp("The coordinator's address, e.g. tcp://127.0.0.1:7400.", valueName: "address"))
    var coordinator: Address?

    @Option(help: "This shard's number, 1-based (default: SPINDLE_RANK + 1).")
    var shard: UInt64?

    @Option(help: "How many shards there are (default: SPINDLE_WORLD_SIZE).")
    var shards: Int?

    @Option(help: "The model: colony or idle.")
    var model = "colony"

    @Option(help: "The colony's seed.")
    var seed: UInt64 = 42

    @Option(help: "Colony nodes.")
    var nodes = 512

    @Option(help: "Colony agents.")
    var agents = 128

    @Option(help: "Chords per colony node.")
    var chords = 1

    @Option(help: "How nodes are placed on shards: hashed (consistent hashing) or ranges (contiguous arcs of the colony's ring).")
    var placement = "hashed"

    @Option(help: "Virtual nodes per shard in the placement ring (hashed placement).")
    var virtualNodes = 256

    @Option(help: "File holding the cluster key (default: SPINDLE_KEY_FILE when started by a mesh).")
    var keyFile: String?

    func validate() throws {
        guard ["colony", "idle"].contains(model) else {
            throw ValidationError("--model: unknown model \"\(model)\" (colony or idle)")
        }
        guard ["hashed", "ranges"].contains(placement) else {
            throw ValidationError("--placement: unknown placement \"\(placement)\" (hashed or ranges)")
        }
        for (name, value) in [("--nodes", nodes), ("--agents", agents), ("--chords", chords),
                              ("--virtual-nodes", virtualNodes)] where value < 0 {
            throw ValidationError("\(name): \(value) is negative")
        }
        if let shards, shards < 1 { throw ValidationError("--shards: \(shards) is not at least 1") }
    }
}

var options = Options.parseOrExit()
let mesh: ProcEnvironment? = getenv(ProcEnvironment.rankVariable) == nil ? nil : {
    do { return try ProcEnvironment.current() } catch { fail(2, "\(error)") }
}()
if let mesh {
    options.shard = options.shard ?? UInt64(mesh.rank + 1)
    options.shards = options.shards ?? mesh.worldSize
}
guard let coordinator = options.coordinator else { Options.exit(withError: ValidationError("--coordinator is required")) }
guard let shardNumber = options.shard, shardNumber >= 1 else {
    Options.exit(withError: ValidationError("--shard (1-based) is required"))
}
guard let shardCount = options.shards, shardCount >= Int(shardNumber) else {
    Options.exit(withError: ValidationError("--shards is required and must be at least --shard"))
}

let id = ShardID(shardNumber)
let colony = ColonyConfiguration(seed: options.seed, nodeCount: options.nodes, agentCount: options.agents,
                                 chordsPerNode: options.chords)
let strategy: PlacementStrategy = options.placement == "ranges"
    ? colony.localityPlacement : .hashed(virtualNodes: options.virtualNodes)
let placement = ShardPlacement(shards: (1...shardCount).map { ShardID(UInt64($0)) }, strategy: strategy)
let shard: any Shard
switch options.model {
case "colony":
    shard = ColonyShard(id: id, configuration: colony, placement: placement)
default:
    shard = IdleShard(id: id)  // validate() allows only colony and idle
}

var tcpConfiguration = TCPTransport.Configuration()
if let keyFile = options.keyFile ?? mesh?.keyFile {
    do { tcpConfiguration.clusterKey = try ClusterKey(contentsOfFile: keyFile) } catch { fail(2, "--key-file: \(error)") }
}
let transport: TCPTransport
do { transport = try TCPTransport(loopCount: 1, configuration: tcpConfiguration) } catch {
    fail(3, "cannot start the event loop: \(error)")
}
let logger = Logger(label: "spindle.runner.shard-host")
let server = ShardService(shard: shard, coordinator: coordinator, transport: transport, mesh: mesh, logger: logger)
// One documented order (docs/operations.md): the group stops services in reverse, so the shard
// server (its request in flight, its connection, its link to the host agent) stops before the
// transport under it. SIGTERM and SIGINT shut down gracefully; the server ending by itself (a
// stop from the coordinator, a lost connection, a failed start) shuts the group down too.
let group = ServiceGroup(configuration: .init(
    services: [transport as any Service, server].map {
        .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
              failureTerminationBehavior: .gracefullyShutdownGroup)
    },
    gracefulShutdownSignals: [.sigterm, .sigint],
    cancellationSignals: [],
    logger: logger))
do {
    try await group.run()
} catch let error as ShardServerError {
    fail(3, "\(error)")
} catch {
    fail(1, "\(error)")
}
exit(server.exitStatus())
