import Distributed
import Logging
import SpindleHostMesh
import SpindleKernel
import SpindleSupport

#if canImport(Glibc)
import Glibc
#endif

/// The proc side of actor meshes: a program started by a host agent serves the mesh actors
/// its client spawns.
///
/// Call it first in the program's `main.swift`, naming every type the program can host:
///
/// ```swift
/// ActorHost.runIfActorHost(registering: [Counter.self]) { env in try TCPTransport(loopCount: 1) }
/// // … the program's normal work continues here when it is not started as a proc
/// ```
/// (`import Spindle` adds `runIfActorHost(registering:)`, which uses SpindleTCP with the agent's
/// cluster key.) When the process is a proc of a proc mesh (`SPINDLE_MESH` is set), this
/// never returns: it connects to its agent, starts an actor system listening on the agent's
/// host (port 0), registers with the client's actor system at `SPINDLE_CLIENT_ADDR`,
/// announces itself ready, serves until its agent goes away, and exits. Otherwise it returns
/// at once.
public enum ActorHost {
    /// Exit codes of a proc that could not serve.
    public enum ExitCode: Int32, Sendable {
        case served = 0
        /// `SPINDLE_*` variables missing or malformed (no `SPINDLE_CLIENT_ADDR`, …).
        case badEnvironment = 78
        /// The agent or the client could not be reached, or refused.
        case unreachable = 69
    }

    /// Serves as a proc's actor host and exits if this process is one; returns otherwise.
    /// - Parameters:
    ///   - types: the mesh actor types this program can make.
    ///   - transport: makes the transport the proc uses (for its agent, its client and its
    ///     actors), from the proc's environment (`keyFile` names the cluster key, if any).
    public static func runIfActorHost(registering types: [any MeshActor.Type],
                                      transport: @escaping @Sendable (ProcEnvironment) throws -> any Transport) {
        guard getenv(ProcEnvironment.meshVariable) != nil else { return }
        let done = BlockingResult<ExitCode>()
        Task.detached { done.finish(await serve(types: types, makeTransport: transport)) }
        exit(done.wait().rawValue)
    }

    /// The proc's whole life; returns how it ended.
    static func serve(types: [any MeshActor.Type],
                      makeTransport: @Sendable (ProcEnvironment) throws -> any Transport) async -> ExitCode {
        var logger = Logger(label: "spindle.actor-host")
        let environment: ProcEnvironment
        do {
            environment = try ProcEnvironment.current()
        } catch {
            return failed(.badEnvironment, "\(error)")
        }
        logger[metadataKey: "mesh"] = "\(environment.mesh)"
        logger[metadataKey: "rank"] = "\(environment.rank)"
        guard let client = environment.clientAddress else {
            return failed(.badEnvironment, "\(ProcEnvironment.clientAddressVariable) is not set: set HostMesh.Configuration.clientAddress to the address of the client's actor system")
        }
        let transport: any Transport
        do {
            transport = try makeTransport(environment)
        } catch {
            return failed(.badEnvironment, "cannot make the transport: \(error)")
        }
        let proc: MeshProc
        do {
            proc = try await MeshProc.connect(environment: environment, transport: transport, logger: logger)
        } catch {
            await transport.shutdown()
            return failed(.unreachable, "\(error)")
        }
        var configuration = SpindleActorSystem.Configuration(listenAddress: listenAddress(near: environment.agentAddress, environment))
        configuration.logger = logger
        let system: SpindleActorSystem
        do {
            system = try await SpindleActorSystem(transport: transport, configuration: configuration)
        } catch {
            proc.close()
            await transport.shutdown()
            return failed(.unreachable, "cannot listen: \(error)")
        }
        let host: ActorHostService
        do {
            host = try system.withWellKnownName(ActorHostService.wellKnownName) {
                ActorHostService(types: types, environment: environment, config: proc.config, actorSystem: system)
            }
            let directoryID = try await withDeadline(.seconds(30)) {
                try await system.actorID(named: MeshDirectory.wellKnownName, at: client)
            }
            let directory = try MeshDirectory.resolve(id: directoryID, using: system)
            try await withDeadline(.seconds(30)) {
                try await directory.register(procMesh: environment.mesh, rank: environment.rank, pid: getpid(), host: host)
            }
            try proc.announceReady()
        } catch {
            await system.shutdown()
            proc.close()
            await transport.shutdown()
            return failed(.unreachable, "cannot register with the client at \(client): \(error)")
        }
        logger.debug("actor host ready", metadata: ["address": "\(system.address.map { "\($0)" } ?? "-")"])
        await proc.waitForAgent()
        withExtendedLifetime(host) {}
        await system.shutdown()
        proc.close()
        await transport.shutdown()
        return .served
    }

    /// Where a proc's actor system listens: the agent's host, any port (a Unix socket beside
    /// a Unix agent).
    static func listenAddress(near agent: Address, _ env: ProcEnvironment) -> Address {
        switch agent {
        case .tcp(let host, _):
            return .tcp(host: host, port: 0)
        case .unix:
            return .unix(path: "/tmp/spindle-actors-\(getpid())-\(env.rank).sock")
        case .inproc(let name):
            return .inproc(name: "\(name)-actors-\(env.rank)")
        }
    }

    private static func failed(_ code: ExitCode, _ message: String) -> ExitCode {
        var line = Array("spindle actor host: \(message)\n".utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        return code
    }
}
