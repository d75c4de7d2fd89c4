import SpindleKernel
import FoundationEssentials

/// One proc of a spawn request: its rank in the mesh and how to start it.
public struct ProcSpec: Sendable, Hashable, Codable {
    public var rank: Int
    public var command: BootstrapCommand

    public init(rank: Int, command: BootstrapCommand) {
        self.rank = rank
        self.command = command
    }
}

/// A client's request that an agent start some procs of a proc mesh.
public struct SpawnRequest: Sendable, Hashable, Codable {
    /// The proc mesh's name (`SPINDLE_MESH`).
    public var mesh: String
    /// The procs this agent starts.
    public var procs: [ProcSpec]
    /// The number of procs in the whole mesh (`SPINDLE_WORLD_SIZE`).
    public var worldSize: Int
    /// This agent's rank in the host mesh (`SPINDLE_HOST_RANK`).
    public var hostRank: Int
    /// Where procs reach the client (`SPINDLE_CLIENT_ADDR`), if it listens.
    public var clientAddress: Address?
    public var restart: RestartPolicy
    /// Owned by the cluster instead of the requesting session (see `SpawnOptions.detached`).
    public var detached: Bool
    public var readiness: Readiness

    public init(mesh: String, procs: [ProcSpec], worldSize: Int, hostRank: Int, clientAddress: Address?,
                restart: RestartPolicy = .never, detached: Bool = false, readiness: Readiness = .announced) {
        self.mesh = mesh
        self.procs = procs
        self.worldSize = worldSize
        self.hostRank = hostRank
        self.clientAddress = clientAddress
        self.restart = restart
        self.detached = detached
        self.readiness = readiness
    }
}

/// A limit an agent enforces (`HostAgent.Limits`), as a refusal names it.
public enum MeshLimit: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Live procs one client session may own on one agent.
    case procsPerClient(requested: Int, live: Int, limit: Int)
    /// Live procs on one agent, over every client and the detached meshes.
    case procsPerAgent(requested: Int, live: Int, limit: Int)
    /// Bytes of one proc's program, arguments and environment.
    case bootstrapBytes(rank: Int, bytes: Int, limit: Int)
    /// Procs in one spawn request.
    case procsPerRequest(requested: Int, limit: Int)

    /// A short name for metrics and logs: `procs_per_client`, …
    public var name: String {
        switch self {
        case .procsPerClient: return "procs_per_client"
        case .procsPerAgent: return "procs_per_agent"
        case .bootstrapBytes: return "bootstrap_bytes"
        case .procsPerRequest: return "procs_per_request"
        }
    }

    public var description: String {
        switch self {
        case .procsPerClient(let r, let l, let m):
            return "procs per client: \(r) requested with \(l) live would exceed the limit of \(m)"
        case .procsPerAgent(let r, let l, let m):
            return "procs per agent: \(r) requested with \(l) live would exceed the limit of \(m)"
        case .bootstrapBytes(let rank, let b, let m):
            return "bootstrap bytes: rank \(rank)'s program, arguments and environment take \(b) bytes, above the limit of \(m)"
        case .procsPerRequest(let r, let m):
            return "procs per request: \(r) requested, above the limit of \(m)"
        }
    }
}

/// Why an agent refused to start a proc.
public enum SpawnRefusal: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The program's real path is not on the agent's allow list.
    case programNotAllowed(program: String, resolved: String)
    /// The program does not exist or is not executable.
    case programNotFound(program: String)
    /// The agent already runs a proc with this mesh name and rank for this owner.
    case duplicateRank(mesh: String, rank: Int)
    /// The request itself is malformed (empty mesh name, bad rank, …).
    case invalidRequest(String)
    /// The agent is shutting down.
    case shuttingDown
    /// The request would exceed one of the agent's limits.
    case limitExceeded(MeshLimit)

    public var description: String {
        switch self {
        case .programNotAllowed(let p, let r):
            return "program \"\(p)\" (\(r)) is not on the agent's allow list"
        case .programNotFound(let p): return "program \"\(p)\" not found or not executable"
        case .duplicateRank(let m, let r): return "mesh \"\(m)\" already has a live proc of rank \(r) on this agent"
        case .invalidRequest(let s): return "invalid spawn request: \(s)"
        case .shuttingDown: return "agent is shutting down"
        case .limitExceeded(let l): return "limit exceeded: \(l)"
        }
    }

    /// A short name for metrics: `program_not_allowed`, `limit_procs_per_client`, …
    public var metricName: String {
        switch self {
        case .programNotAllowed: return "program_not_allowed"
        case .programNotFound: return "program_not_found"
        case .duplicateRank: return "duplicate_rank"
        case .invalidRequest: return "invalid_request"
        case .shuttingDown: return "shutting_down"
        case .limitExceeded(let l): return "limit_" + l.name
        }
    }
}

/// What an agent reports about itself (for admin views and `spindle mesh status`).
public struct AgentInfo: Sendable, Hashable, Codable {
    /// The address the agent listens on.
    public var address: Address
    public var pid: Int32
    /// The digest of the config the asking client session installed, if it installed one.
    public var configDigest: UInt64?
    /// The asking session's procs, then the detached ones, each ordered by mesh name and rank.
    /// Other clients' procs are not shown.
    public var procs: [ProcStatus]
    /// Client sessions holding procs or config on the agent.
    public var clientSessions: Int
    /// The names of the detached proc meshes the agent runs (or still remembers).
    public var detachedMeshes: [String]

    public init(address: Address, pid: Int32, configDigest: UInt64?, procs: [ProcStatus],
                clientSessions: Int = 0, detachedMeshes: [String] = []) {
        self.address = address
        self.pid = pid
        self.configDigest = configDigest
        self.procs = procs
        self.clientSessions = clientSessions
        self.detachedMeshes = detachedMeshes
    }
}

/// Which of a proc's output streams a line came from.
public enum ProcStream: String, Sendable, Hashable, Codable {
    case stdout, stderr
}

/// One line a proc wrote (without its newline; lines longer than the agent's limit are cut).
public struct ProcLogLine: Sendable, Hashable, Codable, CustomStringConvertible {
    public var rank: Int
    public var stream: ProcStream
    public var text: String

    public init(rank: Int, stream: ProcStream, text: String) {
        self.rank = rank
        self.stream = stream
        self.text = text
    }

    /// `[rank] text` (stderr lines `[rank!] text`): how `spindle mesh run` prints them.
    public var description: String { "[\(rank)\(stream == .stderr ? "!" : "")] \(text)" }
}

/// A batch of output of one proc, pushed by its agent.
public struct ProcOutput: Sendable, Hashable, Codable {
    public var mesh: String
    public var lines: [ProcLogLine]
    /// Lines of this proc the agent dropped (the receiver was not keeping up) before these.
    public var dropped: Int

    public init(mesh: String, lines: [ProcLogLine], dropped: Int = 0) {
        self.mesh = mesh
        self.lines = lines
        self.dropped = dropped
    }
}

/// A proc's hello to its agent: who it is, and the token its agent gave this start of it.
public struct ProcHello: Sendable, Hashable, Codable {
    public var mesh: String
    public var rank: Int
    public var pid: Int32
    /// `SPINDLE_PROC_TOKEN`: fresh for every start (and restart) of the proc, so a hello from
    /// a stale or foreign process is refused.
    public var token: String

    public init(mesh: String, rank: Int, pid: Int32, token: String) {
        self.mesh = mesh
        self.rank = rank
        self.pid = pid
        self.token = token
    }
}

/// Every control message of the host-mesh protocol (`ProtocolTag.hostMesh`), carried by
/// reliable links.
///
/// ```
/// client ──installConfig──▶ agent ──configInstalled / configRejected──▶ client
/// client ──spawn──────────▶ agent ──spawnAccepted / spawnRefused──────▶ client
///                           agent ──procState, procDied, procOutput (pushed)─▶ owner
/// client ──stop / queryStates / agentInfo / endSession ──▶ agent ──reply──▶ client
/// anyone ──listDetached / stopDetached / readLogs ──▶ agent ──reply (+ pushes when following)
/// proc   ──procHello──────▶ agent ──procWelcome(config) / procRejected─▶ proc
/// proc   ──procReady──────▶ agent            (the proc is now `ready`)
/// proc   ──fetchConfig────▶ agent ──config──▶ proc
/// ```
/// Requests carry a correlation id; replies repeat it with the `.response` flag.
public enum HostMeshMessage: Sendable, Hashable, Codable {
    case installConfig(ConfigSnapshot)
    case configInstalled(digest: UInt64)
    case configRejected(reason: String)
    /// The client session is over: the agent stops its procs and forgets its config.
    case endSession
    case sessionEnded

    case spawn(SpawnRequest)
    case spawnAccepted(mesh: String, ranks: [Int])
    case spawnRefused(mesh: String, rank: Int, refusal: SpawnRefusal)

    case procState(ProcStatus)
    case procDied(ProcDeath)
    case procOutput(ProcOutput)

    case stop(mesh: String)
    /// The stop is under way; every rank's state on this agent as it began.
    case stopAccepted(mesh: String, states: [ProcStatus])
    case queryStates(mesh: String)
    case states(mesh: String, [ProcStatus])
    case agentInfo
    case info(AgentInfo)

    /// Detached proc meshes: the reply lists their procs.
    case listDetached
    case detached([ProcStatus])
    /// Stops a detached proc mesh; the reply comes once its procs on this agent are final.
    case stopDetached(mesh: String)
    case detachedStopped(mesh: String, [ProcStatus])
    /// The retained output of a proc mesh (the session's own, or a detached one); with
    /// `follow`, later output and state changes are pushed to the asking session.
    case readLogs(mesh: String, detached: Bool, follow: Bool)
    case logs(mesh: String, [ProcOutput], [ProcStatus])

    case procHello(ProcHello)
    case procWelcome(ConfigSnapshot)
    case procRejected(reason: String)
    case procReady(mesh: String, rank: Int)
    case fetchConfig
    case config(ConfigSnapshot)

    /// The peer could not handle a request (malformed, unexpected); the text says why.
    case failure(String)

/// The envelope `kind` for this message (for traces; decoding uses the payload).
    public var kind: UInt16 {
        switch self {
        case .installConfig: return 1
        case .configInstalled: return 2
        case .configRejected: return 3
        case .spawn: return 4
        case .spawnAccepted: return 5
        case .spawnRefused: return 6
        case .procState: return 7
        case .stop: return 8
        case .stopAccepted: return 9
        case .queryStates: return 10
        case .states: return 11
        case .agentInfo: return 12
        case .info: return 13
        case .procHello: return 14
        case .procWelcome: return 15
        case .procRejected: return 16
        case .procReady: return 17
        case .fetchConfig: return 18
        case .config: return 19
        case .failure: return 20
        case .endSession: return 21
        case .sessionEnded: return 22
        case .procDied: return 23
        case .procOutput: return 24
        case .listDetached: return 25
        case .detached: return 26
        case .stopDetached: return 27
        case .detachedStopped: return 28
        case .readLogs: return 29
        case .logs: return 30
        }
    }

    /// The message in an envelope; `correlation` pairs replies with requests.
    public func envelope(correlation: UInt64 = 0, response: Bool = false) -> Envelope {
        // JSONEncoder cannot fail on these types: every value is a string, number, array or
        // dictionary with string keys.
        let payload = (try? JSONEncoder().encode(self)).map { [UInt8]($0) } ?? []
        var flags: EnvelopeFlags = response ? [.response] : []
        if correlation == 0 { flags.insert(.oneWay) }
        return Envelope(protocolTag: .hostMesh, kind: kind, flags: flags,
                        correlation: correlation, payload: payload)
    }

    /// Decodes the message an envelope carries.
    /// - Throws: `HostMeshProtocolError` naming the envelope's tag, kind and the decoding problem.
    public init(envelope: Envelope) throws(HostMeshProtocolError) {
        guard envelope.protocolTag == .hostMesh else {
            throw HostMeshProtocolError(kind: envelope.kind,
                                        problem: "envelope of protocol \(envelope.protocolTag), expected host-mesh")
        }
        do {
            self = try JSONDecoder().decode(HostMeshMessage.self, from: Data(envelope.payload))
        } catch {
            throw HostMeshProtocolError(kind: envelope.kind,
                                        problem: "undecodable payload of \(envelope.payload.count) bytes: \(error)")
        }
    }
}

/// A host-mesh envelope that could not be decoded.
public struct HostMeshProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public var kind: UInt16
    public var problem: String

    public var description: String { "bad host-mesh message (kind \(kind)): \(problem)" }
}
