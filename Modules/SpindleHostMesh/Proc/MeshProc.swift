import Logging
import SpindleKernel

/// The proc side of a proc mesh: a spawned program's connection back to its agent.
///
/// ```swift
/// let env = try ProcEnvironment.current()              // SPINDLE_MESH, SPINDLE_RANK, …
/// let proc = try await MeshProc.connect(environment: env, transport: tcp)
/// print(proc.config["model"] ?? "-")                    // the snapshot the client pushed
/// // … start serving (a shard server, a worker) …
/// try proc.announceReady()                              // the client's spawn completes
/// ```
/// Any program can be a proc; it becomes `ready` only once it announces itself.
public final class MeshProc: Sendable {
    /// Who the proc is and where its agent and client are.
    public let environment: ProcEnvironment
    /// The config snapshot installed on the agent when the proc connected.
    public let config: ConfigSnapshot
    let link: ControlLink

    private init(environment: ProcEnvironment, config: ConfigSnapshot, link: ControlLink) {
        self.environment = environment
        self.config = config
        self.link = link
    }

    /// The proc's rank in its mesh.
    public var rank: Int { environment.rank }

    /// Connects to the agent, says hello and receives the installed config.
    /// - Throws: `MeshProcError` when the agent cannot be reached or refuses the proc.
    public static func connect(environment: ProcEnvironment, transport: any Transport,
                               timeout: Duration = .seconds(10),
                               logger: Logger = Logger(label: "spindle.proc")) async throws(MeshProcError) -> MeshProc {
        let connection: any TransportConnection
        do {
            connection = try await transport.connect(to: environment.agentAddress)
        } catch {
            throw .agentUnreachable(environment.agentAddress, error)
        }
        let link = ControlLink(connection: connection, logger: logger, onMessage: { link, message, correlation in
            if correlation != 0 {
                link.sendOrLog(.failure("a proc does not accept message kind \(message.kind)"), replyTo: correlation)
            }
        })
        let reply: HostMeshMessage
        do {
            reply = try await link.request(.procHello(mesh: environment.mesh, rank: environment.rank, pid: currentPID()),
                                           timeout: timeout)
        } catch {
            link.close()
            throw .requestFailed(environment.agentAddress, error)
        }
        switch reply {
        case .procWelcome(let config):
            return MeshProc(environment: environment, config: config, link: link)
        case .procRejected(let reason):
            link.close()
            throw .rejected(environment.agentAddress, reason)
        default:
            link.close()
            throw .rejected(environment.agentAddress, "unexpected reply kind \(reply.kind)")
        }
    }

    /// Tells the agent the proc is ready; the client's spawn waits for this.
    public func announceReady() throws(MeshProcError) {
        do {
            try link.send(.procReady(mesh: environment.mesh, rank: environment.rank))
        } catch {
            throw .requestFailed(environment.agentAddress, .transport(error))
        }
    }

    /// Reads the agent's currently installed config snapshot.
    public func fetchConfig(timeout: Duration = .seconds(10)) async throws(MeshProcError) -> ConfigSnapshot {
        let reply: HostMeshMessage
        do {
            reply = try await link.request(.fetchConfig, timeout: timeout)
        } catch {
            throw .requestFailed(environment.agentAddress, error)
        }
        guard case .config(let c) = reply else {
            throw .rejected(environment.agentAddress, "unexpected reply kind \(reply.kind)")
        }
        return c
    }

    /// Waits until the agent's connection closes (the agent stopped or died).
    public func waitForAgent() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            link.onCloseOnce { c.resume() }
        }
    }

    /// Closes the connection to the agent.
    public func close() { link.close() }
}

/// Why a proc could not talk to its agent.
public enum MeshProcError: Error, Sendable, Equatable, CustomStringConvertible {
    case agentUnreachable(Address, TransportError)
    case requestFailed(Address, LinkFailure)
    case rejected(Address, String)

    public var description: String {
        switch self {
        case .agentUnreachable(let a, let e): return "proc cannot reach its agent at \(a): \(e)"
        case .requestFailed(let a, let f): return "proc request to agent \(a) failed: \(f)"
        case .rejected(let a, let why): return "agent \(a) refused the proc: \(why)"
        }
    }
}
