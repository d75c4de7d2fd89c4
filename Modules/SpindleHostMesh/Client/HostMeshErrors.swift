import SpindleKernel

/// Why attaching to or using a host mesh failed.
public enum HostMeshError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config push failed on at least one host: each failing host with its cause.
    case configPush(ConfigPushError)
    /// The mesh name or host list is malformed (bad name, duplicate host).
    case invalidMesh(HostMeshRefError)
    /// The mesh was shut down.
    case shutDown(mesh: String)

    public var description: String {
        switch self {
        case .configPush(let e): return e.description
        case .invalidMesh(let e): return e.description
        case .shutDown(let m): return "host mesh \"\(m)\" is shut down"
        }
    }
}

/// Why spawning, stopping or querying a proc mesh failed.
public enum ProcMeshError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The per-rank bootstrap function threw for `rank`; its error text.
    case bootstrapFailed(mesh: String, rank: Int, String)
    /// The command of `rank` (program, arguments, environment) takes more bytes than the
    /// client sends (`HostMesh.Configuration.maxBootstrapBytes`); nothing was started.
    case bootstrapTooLarge(mesh: String, rank: Int, bytes: Int, limit: Int)
    /// The proc mesh name is malformed or already in use on this host mesh.
    case invalidName(String, problem: String)
    /// An agent refused to start the proc of `rank` (program not allowed, …).
    case spawnRefused(mesh: String, host: Address, rank: Int, SpawnRefusal)
    /// An agent could not be asked (connection failed, no reply, declared lost).
    case hostFailed(mesh: String, host: Address, LinkFailure)
    /// The agent at `host` was lost (liveness bound, restart, closed session) while the
    /// call waited on its procs.
    case hostLost(mesh: String, host: Address, reason: String)
    /// A proc ended before it was ready; every rank's state at that moment.
    case procFailed(mesh: String, rank: Int, states: [ProcState])
    /// The mesh went quiet for the idle timeout before every proc was ready; every rank's
    /// last state (`timeout` for ranks never heard from).
    case spawnTimedOut(mesh: String, idle: Duration, states: [ProcState])
    /// Some ranks did not reach a final state before the stop's idle timeout.
    case stopTimedOut(mesh: String, idle: Duration, notStopped: [Int], states: [ProcState])
    /// The host mesh was shut down.
    case shutDown(mesh: String)

    public var description: String {
        func list(_ states: [ProcState]) -> String {
            "[" + states.map(\.description).joined(separator: ", ") + "]"
        }
        switch self {
        case .bootstrapFailed(let m, let r, let e): return "proc mesh \"\(m)\": bootstrap for rank \(r) failed: \(e)"
        case .bootstrapTooLarge(let m, let r, let b, let l):
            return "proc mesh \"\(m)\": the command of rank \(r) takes \(b) bytes, above the limit of \(l)"
        case .hostLost(let m, let h, let why): return "proc mesh \"\(m)\": agent \(h) lost: \(why)"
        case .invalidName(let n, let p): return "proc mesh name \"\(n)\": \(p)"
        case .spawnRefused(let m, let h, let r, let why): return "proc mesh \"\(m)\": agent \(h) refused rank \(r): \(why)"
        case .hostFailed(let m, let h, let f): return "proc mesh \"\(m)\": agent \(h): \(f)"
        case .procFailed(let m, let r, let s): return "proc mesh \"\(m)\": rank \(r) ended before it was ready: \(s[r]); states \(list(s))"
        case .spawnTimedOut(let m, let idle, let s):
            return "proc mesh \"\(m)\": not every proc ready after \(idle) without progress; states \(list(s))"
        case .stopTimedOut(let m, let idle, let ranks, let s):
            return "proc mesh \"\(m)\": ranks \(ranks) did not stop within \(idle) without progress; states \(list(s))"
        case .shutDown(let m): return "proc mesh \"\(m)\": host mesh is shut down"
        }
    }

    /// Every rank's state carried by the error, if it carries them.
    public var states: [ProcState]? {
        switch self {
        case .procFailed(_, _, let s), .spawnTimedOut(_, _, let s), .stopTimedOut(_, _, _, let s): return s
        default: return nil
        }
    }
}
