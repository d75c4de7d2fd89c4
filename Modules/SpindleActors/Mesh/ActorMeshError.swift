import SpindleHostMesh
import SpindleKernel

/// Why an actor mesh could not be made or used.
public enum ActorMeshError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No actor system of this process has actor hosts registered for the proc mesh: its procs
    /// do not run `ActorHost.runIfActorHost`, or the host mesh's `clientAddress` is not the
    /// address of a system here.
    case noActorHosts(procMesh: String)
    /// Some ranks' actor hosts did not register within the wait.
    case hostsMissing(procMesh: String, ranks: [Int], after: Duration)
    /// The name cannot be an actor's well-known name.
    case invalidName(String, problem: String)
    /// The spawn argument of `rank` could not be made or encoded.
    case badArgument(rank: Int, reason: String)
    /// These ranks failed to make their actor (the others were stopped again).
    case spawnFailed(actorMesh: String, failures: [RankFailure])
    /// The ranks asked for are not all in the mesh.
    case ranksOutOfRange([Int], count: Int)

    public var description: String {
        switch self {
        case .noActorHosts(let m):
            return "no actor hosts registered for proc mesh \"\(m)\": do its procs call ActorHost.runIfActorHost, and is the host mesh's clientAddress this actor system's address?"
        case .hostsMissing(let m, let ranks, let d):
            return "proc mesh \"\(m)\": ranks \(ranks) registered no actor host within \(d)"
        case .invalidName(let n, let p): return "\"\(n)\" cannot name an actor mesh: \(p)"
        case .badArgument(let rank, let reason): return "spawn argument of rank \(rank): \(reason)"
        case .spawnFailed(let m, let failures):
            return "actor mesh \"\(m)\" failed to spawn: " + failures.map { "rank \($0.rank): \($0.reason)" }.joined(separator: "; ")
        case .ranksOutOfRange(let ranks, let count): return "ranks \(ranks) are not in a mesh of \(count)"
        }
    }
}

/// One rank's failure.
public struct RankFailure: Sendable, Equatable, Codable, CustomStringConvertible {
    public var rank: Int
    public var reason: String
    public init(rank: Int, reason: String) {
        self.rank = rank
        self.reason = reason
    }
    public var description: String { "rank \(rank): \(reason)" }
}

/// Why a proc's actor host refused to make an actor (arrives typed at the client).
public enum ActorHostError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    case unknownType(String, known: [String])
    case nameInUse(String)
    case badArgument(type: String, reason: String)
    case factoryFailed(type: String, reason: String)

    public var description: String {
        switch self {
        case .unknownType(let t, let known): return "this proc registers no mesh actor type \(t) (it registers \(known))"
        case .nameInUse(let n): return "an actor named \"\(n)\" already runs on this proc"
        case .badArgument(let t, let r): return "spawn argument for \(t) does not decode: \(r)"
        case .factoryFailed(let t, let r): return "\(t).spawn failed: \(r)"
        }
    }
}

/// What happened to the procs under an actor mesh (`ActorMesh.events()`).
public enum ActorMeshEvent: Sendable, Equatable, CustomStringConvertible {
    /// The proc of `rank` changed state, as its agent reported.
    case procState(rank: Int, state: ProcState)
    /// The proc of `rank` died (its agent reported it, or its link was lost): its actor's
    /// calls fail with `ActorCallError.procDied` from now on.
    case procDied(rank: Int, state: ProcState)

    public var description: String {
        switch self {
        case .procState(let r, let s): return "rank \(r): \(s)"
        case .procDied(let r, let s): return "rank \(r) died: \(s)"
        }
    }
}
