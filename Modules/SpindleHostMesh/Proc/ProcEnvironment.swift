import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

/// What an agent tells a proc through its environment: who it is and whom to call.
///
/// | variable | meaning |
/// |---|---|
/// | `SPINDLE_MESH` | the proc mesh's name |
/// | `SPINDLE_RANK` | the proc's rank in the mesh: hostRank × perHost + localRank |
/// | `SPINDLE_WORLD_SIZE` | the number of procs in the mesh |
/// | `SPINDLE_HOST_RANK` | the rank of the proc's host in the host mesh |
/// | `SPINDLE_LOCAL_RANK` | the proc's index among its host's procs |
/// | `SPINDLE_AGENT_ADDR` | the agent's address (connect back here) |
/// | `SPINDLE_CLIENT_ADDR` | the client's address, when the client gave one |
/// | `SPINDLE_KEY_FILE` | the cluster key file, when the agent's transport uses one |
/// | `SPINDLE_PROC_TOKEN` | this start of the proc (its hello must carry it) |
public struct ProcEnvironment: Sendable, Hashable, CustomStringConvertible {
    public static let meshVariable = "SPINDLE_MESH"
    public static let rankVariable = "SPINDLE_RANK"
    public static let worldSizeVariable = "SPINDLE_WORLD_SIZE"
    public static let hostRankVariable = "SPINDLE_HOST_RANK"
    public static let localRankVariable = "SPINDLE_LOCAL_RANK"
    public static let agentAddressVariable = "SPINDLE_AGENT_ADDR"
    public static let clientAddressVariable = "SPINDLE_CLIENT_ADDR"
    public static let keyFileVariable = "SPINDLE_KEY_FILE"
    public static let tokenVariable = "SPINDLE_PROC_TOKEN"

    public var mesh: String
    public var rank: Int
    public var worldSize: Int
    public var hostRank: Int
    public var localRank: Int
    public var agentAddress: Address
    public var clientAddress: Address?
    public var keyFile: String?
    /// The token the agent gave this start of the proc; its hello must carry it.
    public var token: String?

    public init(mesh: String, rank: Int, worldSize: Int, hostRank: Int, localRank: Int,
                agentAddress: Address, clientAddress: Address? = nil, keyFile: String? = nil, token: String? = nil) {
        self.mesh = mesh
        self.rank = rank
        self.worldSize = worldSize
        self.hostRank = hostRank
        self.localRank = localRank
        self.agentAddress = agentAddress
        self.clientAddress = clientAddress
        self.keyFile = keyFile
        self.token = token
    }

    /// Reads the variables from `environment`.
    /// - Throws: `ProcEnvironmentError` naming the missing or malformed variable.
    public init(environment: [String: String]) throws(ProcEnvironmentError) {
        func need(_ name: String) throws(ProcEnvironmentError) -> String {
            guard let v = environment[name], !v.isEmpty else { throw ProcEnvironmentError(variable: name, problem: "not set") }
            return v
        }
        func int(_ name: String) throws(ProcEnvironmentError) -> Int {
            let v = try need(name)
            guard let i = Int(v), i >= 0 else {
                throw ProcEnvironmentError(variable: name, problem: "\"\(v)\" is not a non-negative integer")
            }
            return i
        }
        func address(_ v: String, _ name: String) throws(ProcEnvironmentError) -> Address {
            do { return try Address(parsing: v) } catch {
                throw ProcEnvironmentError(variable: name, problem: error.description)
            }
        }
        mesh = try need(Self.meshVariable)
        rank = try int(Self.rankVariable)
        worldSize = try int(Self.worldSizeVariable)
        hostRank = try int(Self.hostRankVariable)
        localRank = try int(Self.localRankVariable)
        guard rank < worldSize else {
            throw ProcEnvironmentError(variable: Self.rankVariable, problem: "rank \(rank) is not below the world size \(worldSize)")
        }
        agentAddress = try address(try need(Self.agentAddressVariable), Self.agentAddressVariable)
        if let c = environment[Self.clientAddressVariable], !c.isEmpty {
            clientAddress = try address(c, Self.clientAddressVariable)
        }
        if let k = environment[Self.keyFileVariable], !k.isEmpty { keyFile = k }
        if let t = environment[Self.tokenVariable], !t.isEmpty { token = t }
    }

    /// Reads the variables from this process's environment.
    public static func current() throws(ProcEnvironmentError) -> ProcEnvironment {
        try ProcEnvironment(environment: processEnvironment())
    }

    /// The variables as the agent sets them.
    public var variables: [String: String] {
        var v = [
            Self.meshVariable: mesh,
            Self.rankVariable: String(rank),
            Self.worldSizeVariable: String(worldSize),
            Self.hostRankVariable: String(hostRank),
            Self.localRankVariable: String(localRank),
            Self.agentAddressVariable: agentAddress.description,
        ]
        if let c = clientAddress { v[Self.clientAddressVariable] = c.description }
        if let k = keyFile { v[Self.keyFileVariable] = k }
        if let t = token { v[Self.tokenVariable] = t }
        return v
    }

    public var description: String { "\(mesh)[\(rank)/\(worldSize)] via \(agentAddress)" }
}

/// A `SPINDLE_*` variable a proc needs is missing or malformed.
public struct ProcEnvironmentError: Error, Sendable, Equatable, CustomStringConvertible {
    public var variable: String
    public var problem: String

    public var description: String { "proc environment: \(variable): \(problem)" }
}

/// This process's environment as a dictionary.
func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") {
            result[String(s[..<eq])] = String(s[s.index(after: eq)...])
        }
        p += 1
    }
    return result
}

/// This process's id.
func currentPID() -> Int32 { getpid() }
