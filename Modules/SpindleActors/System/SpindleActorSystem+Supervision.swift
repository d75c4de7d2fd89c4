import SpindleKernel
import Synchronization

/// What the actor mesh layer tells a system about nodes it supervises.
extension SpindleActorSystem {
    /// `node` is dead (its proc died): pending calls to it fail with `error` now, later ones
    /// at once.
    func markDead(_ node: NodeID, with error: ActorCallError) {
        let calls = state.withLock { s -> [OutboundCalls<CallWaiter>.Call] in
            s.deadNodes[node] = error
            return s.calls.takeAll(toNode: node)
        }
        for c in calls { fail(c, error) }
    }

    /// Calls to `node` that fail with `.peerLost` fail with `translate(reason)` instead, and
    /// `onLost(reason)` runs when a link to `node` is declared lost. Returns the token that
    /// `unsupervise` takes (several actor meshes may supervise one node).
    func supervise(_ node: NodeID, translate: @escaping @Sendable (String) -> ActorCallError,
                   onLost: @escaping @Sendable (String) -> Void) -> UInt64 {
        state.withLock { s in
            s.nextSupervision += 1
            s.supervisions[node, default: [:]][s.nextSupervision] = Supervision(translate: translate, onLost: onLost)
            return s.nextSupervision
        }
    }

    /// Ends one supervision of `node` (its mesh was stopped or let go).
    func unsupervise(_ node: NodeID, token: UInt64) {
        state.withLock { s in
            s.supervisions[node]?.removeValue(forKey: token)
            if s.supervisions[node]?.isEmpty == true { s.supervisions.removeValue(forKey: node) }
        }
    }

    /// Runs the loss watchers of `node`.
    func notifyLost(_ node: NodeID, reason: String) {
        let watchers = state.withLock { s in (s.supervisions[node] ?? [:]).sorted { $0.key < $1.key }.map(\.value.onLost) }
        for w in watchers { w(reason) }
    }
}

/// How an actor mesh supervises one node (`SpindleActorSystem.supervise`).
struct Supervision: Sendable {
    var translate: @Sendable (String) -> ActorCallError
    var onLost: @Sendable (String) -> Void
}

/// The listening actor systems of this process, for `ProcMesh.spawnActors` to find the one
/// its procs registered with.
final class ActorSystemRegistry: Sendable {
    static let shared = ActorSystemRegistry()

    private final class Entry: Sendable {
        weak let system: SpindleActorSystem?
        init(_ s: SpindleActorSystem) { system = s }
    }
    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    func add(_ s: SpindleActorSystem) {
        entries.withLock { $0[ObjectIdentifier(s)] = Entry(s) }
    }

    func remove(_ s: SpindleActorSystem) {
        _ = entries.withLock { $0.removeValue(forKey: ObjectIdentifier(s)) }
    }

    var systems: [SpindleActorSystem] {
        entries.withLock { e in
            e = e.filter { $0.value.system != nil }
            return e.values.compactMap(\.system)
        }
    }
}
