// The shard server of spindle-shard as a service of its ServiceGroup, and the process's exit
// status: a stop from the coordinator, or SIGTERM/SIGINT (a host agent stopping the proc's
// group, or Ctrl-C), shuts the shard down and exits 0; every non-zero exit says why on stderr.
import Logging
import ServiceLifecycle
import SpindleHostMesh
import SpindleKernel
import SpindleRunner
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Why spindle-shard could not start serving (exit status 3), naming the shard and the peer.
enum ShardServerError: Error, CustomStringConvertible {
    /// The coordinator could not be reached, or did not take the hello.
    case cannotServe(shard: ShardID, coordinator: Address, cause: RunnerError)
    /// The host agent that started this proc could not be told it is ready.
    case cannotAnnounceReady(shard: ShardID, cause: any Error)

    var description: String {
        switch self {
        case .cannotServe(_, _, let cause):
            return "\(cause)"  // RunnerError.remoteFailure names the shard and the coordinator
        case let .cannotAnnounceReady(shard, cause):
            return "\(shard) cannot announce readiness to the host agent: \(cause)"
        }
    }
}

/// Serves the shard until the coordinator says stop, the connection is lost, or the group
/// shuts down gracefully; then shuts the shard host down (a request it is running finishes and
/// its reply is sent before the connection closes) and closes the link to the host agent.
///
/// Listed after the transport in the group, so it stops before the transport under it
/// (docs/operations.md, "Services and shutdown order"). It ends by itself when serving ends,
/// which shuts the rest of the group down.
final class ShardService: Service {
    private let shard: any Shard
    private let coordinator: Address
    private let transport: any Transport
    private let mesh: ProcEnvironment?
    private let logger: Logger

    private struct Outcome {
        var ending: ShardHost.Ending?
        var shutDownGracefully = false
    }
    private let outcome = Mutex(Outcome())

    init(shard: any Shard, coordinator: Address, transport: any Transport, mesh: ProcEnvironment?, logger: Logger) {
        self.shard = shard
        self.coordinator = coordinator
        self.transport = transport
        self.mesh = mesh
        self.logger = logger
    }

    func run() async throws {
        let host: ShardHost
        do {
            host = try await ShardHost.serve(shard, coordinator: coordinator, transport: transport, logger: logger,
                                             execution: .transportThread)
        } catch {
            throw ShardServerError.cannotServe(shard: shard.id, coordinator: coordinator, cause: error)
        }
        var meshProc: MeshProc? = nil
        if let mesh {
            do {
                let proc = try await MeshProc.connect(environment: mesh, transport: transport)
                try proc.announceReady()
                meshProc = proc
            } catch {
                await host.shutdown()
                throw ShardServerError.cannotAnnounceReady(shard: shard.id, cause: error)
            }
        }
        // A signal that came while connecting runs the handler at once.
        let ending = await withGracefulShutdownHandler {
            await host.waitUntilDone()
        } onGracefulShutdown: {
            self.outcome.withLock { $0.shutDownGracefully = true }
            Task { await host.shutdown() }
        }
        await host.shutdown()
        meshProc?.close()
        outcome.withLock { $0.ending = ending }
        logger.info("shard server stopped", metadata: ["shard": "\(shard.id)", "ending": "\(ending)"])
    }

    /// The exit status for how serving ended: 0 after the coordinator's stop or a graceful
    /// shutdown (SIGTERM / SIGINT), 1 when the connection was lost (the reason printed on stderr).
    func exitStatus() -> Int32 {
        let o = outcome.withLock { $0 }
        if o.shutDownGracefully || o.ending == .stopped { return 0 }
        var line = Array("spindle-shard: exit 1: \(o.ending.map(\.description) ?? "serving did not end")\n".utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        return 1
    }
}
