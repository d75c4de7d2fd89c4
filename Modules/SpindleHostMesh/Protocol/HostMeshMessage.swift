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

    public init(mesh: String, procs: [ProcSpec], worldSize: Int, hostRank: Int, clientAddress: Address?) {
        self.mesh = mesh
        self.procs = procs
        self.worldSize = worldSize
        self.hostRank = hostRank
        self.clientAddress = clientAddress
    }
}

/// Why an agent refused to start a proc.
public enum SpawnRefusal: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The program's real path is not on the agent's allow list.
    case programNotAllowed(program: String, resolved: String)
    /// The program does not exist or is not executable.
    case programNotFound(program: String)
    /// The agent already runs a proc with this mesh name and rank.
    case duplicateRank(mesh: String, rank: Int)
    /// The request itself is malformed (empty mesh name, bad rank, …).
    case invalidRequest(String)
    /// The agent is shutting down.
    case shuttingDown

    public var description: String {
        switch self {
        case .programNotAllowed(let p, let r):
            return "program \"\(p)\" (\(r)) is not on the agent's allow list"
        case .programNotFound(let p): return "program \"\(p)\" not found or not executable"
        case .duplicateRank(let m, let r): return "mesh \"\(m)\" already has a proc of rank \(r) on this agent"
        case .invalidRequest(let s): return "invalid spawn request: \(s)"
        case .shuttingDown: return "agent is shutting down"
        }
    }
}

/// What an agent reports about itself (for admin views and `spindle mesh status`).
public struct AgentInfo: Sendable, Hashable, Codable {
    /// The address the agent listens on.
    public var address: Address
    public var pid: Int32
    /// The digest of the installed config snapshot, if one is installed.
    public var configDigest: UInt64?
    /// Every proc the agent knows, ordered by mesh name and rank.
    public var procs: [ProcStatus]

    public init(address: Address, pid: Int32, configDigest: UInt64?, procs: [ProcStatus]) {
        self.address = address
        self.pid = pid
        self.configDigest = configDigest
        self.procs = procs
    }
}

/// Every control message of the host-mesh protocol (`ProtocolTag.hostMesh`).
///
/// ```
/// client ──installConfig──▶ agent ──configInstalled / configRejected──▶ client
/// client ──spawn──────────▶ agent ──spawnAccepted / spawnRefused──────▶ client
///                           agent ──procState (pushed, one per change)─▶ client
/// client ──stop / queryStates / agentInfo ──▶ agent ──reply──▶ client
/// proc   ──procHello──────▶ agent ──procWelcome(config) / procRejected─▶ proc
/// proc   ──procReady──────▶ agent            (the proc is now `ready`)
/// proc   ──fetchConfig────▶ agent ──config──▶ proc
/// ```
/// Requests carry a correlation id; replies repeat it with the `.response` flag.
public enum HostMeshMessage: Sendable, Hashable, Codable {
    case installConfig(ConfigSnapshot)
    case configInstalled(digest: UInt64)
    case configRejected(reason: String)

    case spawn(SpawnRequest)
    case spawnAccepted(mesh: String, ranks: [Int])
    case spawnRefused(mesh: String, rank: Int, refusal: SpawnRefusal)

    case procState(ProcStatus)

    case stop(mesh: String)
    case stopAccepted(mesh: String, ranks: [Int])
    case queryStates(mesh: String)
    case states(mesh: String, [ProcStatus])
    case agentInfo
    case info(AgentInfo)

    case procHello(mesh: String, rank: Int, pid: Int32)
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
