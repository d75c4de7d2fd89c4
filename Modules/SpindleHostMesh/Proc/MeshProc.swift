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
    /// The config snapshot of the proc's client, as installed when the proc connected.
    public let config: ConfigSnapshot
    let channel: ControlChannel

    private init(environment: ProcEnvironment, config: ConfigSnapshot, channel: ControlChannel) {
        self.environment = environment
        self.config = config
        self.channel = channel
    }

    deinit { channel.close() }

    /// The proc's rank in its mesh.
    public var rank: Int { environment.rank }

    /// Connects to the agent over a reliable link, says hello (with `SPINDLE_PROC_TOKEN`) and
    /// receives its client's config.
    /// - Parameters:
    ///   - livenessBound: how long the agent may stay silent before `waitForAgent` returns.
    /// - Throws: `MeshProcError` when the agent cannot be reached or refuses the proc.
    public static func connect(environment: ProcEnvironment, transport: any Transport,
                               timeout: Duration = .seconds(10), livenessBound: Duration = .seconds(5),
                               logger: Logger = Logger(label: "spindle.proc")) async throws(MeshProcError) -> MeshProc {
        var configuration = ReliableLink.Configuration()
        configuration.core.livenessBound = livenessBound
        configuration.logger = logger
        let channel = ControlChannel.connect(
            over: transport, to: environment.agentAddress, configuration: configuration, logger: logger, failFast: true,
            onMessage: { channel, message, correlation in
                if correlation != 0 {
                    channel.sendOrLog(.failure("a proc does not accept message kind \(message.kind)"), replyTo: correlation)
                }
            })
        let hello = ProcHello(mesh: environment.mesh, rank: environment.rank, pid: currentPID(),
                              token: environment.token ?? "")
        let reply: HostMeshMessage
        do {
            reply = try await channel.request(.procHello(hello), timeout: timeout)
        } catch {
            await channel.shutdown()
            if case .transport(let e) = error { throw .agentUnreachable(environment.agentAddress, e) }
            throw .requestFailed(environment.agentAddress, error)
        }
        switch reply {
        case .procWelcome(let config):
            return MeshProc(environment: environment, config: config, channel: channel)
        case .procRejected(let reason):
            await channel.shutdown()
            throw .rejected(environment.agentAddress, reason)
        default:
            await channel.shutdown()
            throw .rejected(environment.agentAddress, "unexpected reply kind \(reply.kind)")
        }
    }

    /// Tells the agent the proc is ready; the client's spawn waits for this.
    public func announceReady() throws(MeshProcError) {
        do {
            try channel.send(.procReady(mesh: environment.mesh, rank: environment.rank))
        } catch {
            throw .requestFailed(environment.agentAddress, error)
        }
    }

    /// Reads its client's currently installed config snapshot.
    public func fetchConfig(timeout: Duration = .seconds(10)) async throws(MeshProcError) -> ConfigSnapshot {
        let reply: HostMeshMessage
        do {
            reply = try await channel.request(.fetchConfig, timeout: timeout)
        } catch {
            throw .requestFailed(environment.agentAddress, error)
        }
        guard case .config(let c) = reply else {
            throw .rejected(environment.agentAddress, "unexpected reply kind \(reply.kind)")
        }
        return c
    }

    /// Waits until the agent is gone: it closed the session (it stopped), was declared lost
    /// (the liveness bound), or restarted.
    public func waitForAgent() async {
        await channel.waitUntilPeerGone()
    }

    /// Closes the connection to the agent (gracefully).
    public func close() { channel.close() }

    /// Closes the connection and waits until it is closed.
    public func shutdown() async { await channel.shutdown() }
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
