import Distributed
import SpindleHostMesh
import SpindleKernel

/// Why a call to a distributed actor failed before its function could answer.
///
/// Errors the function itself throws arrive as they were thrown (a `Codable` error, as its
/// own type) or as `RemoteCallError`; these cases are the system's own. `Codable`, so one
/// raised on a remote node reaches the caller typed.
public enum ActorCallError: DistributedActorSystemError, Sendable, Hashable, Codable, CustomStringConvertible {
    /// No actor with this id exists (any more) on its node: it was never created there, or it
    /// was deinitialised, or the node at its address is another incarnation.
    case actorNotFound(ActorID)
    /// The node could not be reached or stopped answering: its reliable link declared it lost
    /// (nothing heard for the liveness bound), it restarted or closed the session, or its
    /// address refused connections on every retry. The reason says which.
    case peerLost(NodeID, reason: String)
    /// No answer within the call's deadline (its remaining budget when it was sent).
    case timedOut(deadline: Duration)
    /// The calling task was cancelled; the remote execution was told to stop.
    case cancelled
    /// The proc hosting the actor (rank `rank` of an actor mesh) died; `state` is its last
    /// known state.
    case procDied(rank: Int, state: ProcState)
    /// The remote node refused to run the call: unknown target, arguments that did not
    /// decode, a generic substitution it does not know.
    case invalidCall(actor: ActorID, target: String, reason: String)
    /// An argument, result or error could not be encoded or decoded on this side.
    case serializationFailed(String)
    /// The encoded call or reply exceeds the link's frame limit.
    case tooLarge(size: Int, limit: Int)
    /// The call was sent one-way (`ActorMesh.cast`): no result comes back.
    case sentOneWay
    /// The actor system was shut down.
    case systemShutDown

    public var description: String {
        switch self {
        case .actorNotFound(let id): return "actor \(id) not found"
        case .peerLost(let node, let reason): return "peer \(node) lost: \(reason)"
        case .timedOut(let d): return "no reply within the call's deadline of \(d)"
        case .cancelled: return "the call was cancelled"
        case .procDied(let rank, let state): return "the proc of rank \(rank) died (\(state))"
        case .invalidCall(let actor, let target, let reason): return "\(actor) refused call \(target): \(reason)"
        case .serializationFailed(let what): return "serialization failed: \(what)"
        case .tooLarge(let size, let limit): return "call of \(size) bytes exceeds the frame limit of \(limit)"
        case .sentOneWay: return "sent one-way: no result comes back"
        case .systemShutDown: return "the actor system was shut down"
        }
    }

    /// A short name for metrics and logs: `peer_lost`, `timed_out`, …
    public var kind: String {
        switch self {
        case .actorNotFound: return "actor_not_found"
        case .peerLost: return "peer_lost"
        case .timedOut: return "timed_out"
        case .cancelled: return "cancelled"
        case .procDied: return "proc_died"
        case .invalidCall: return "invalid_call"
        case .serializationFailed: return "serialization_failed"
        case .tooLarge: return "too_large"
        case .sentOneWay: return "sent_one_way"
        case .systemShutDown: return "shut_down"
        }
    }
}

/// An error a remote distributed function threw that is not `Codable` (or whose type this
/// process does not know): its text, with the actor and function it came from.
public struct RemoteCallError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The actor that threw.
    public var actor: ActorID
    /// The distributed function (its mangled identifier).
    public var target: String
    /// `String(describing:)` of the error on the remote side.
    public var description: String
    /// The thrown error's type as the remote side names it.
    public var errorType: String

    public init(actor: ActorID, target: String, description: String, errorType: String = "") {
        self.actor = actor
        self.target = target
        self.description = description
        self.errorType = errorType
    }
}
