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
    /// `onLost(reason)` runs when a link to `node` is declared lost.
    func supervise(_ node: NodeID, translate: @escaping @Sendable (String) -> ActorCallError,
                   onLost: @escaping @Sendable (String) -> Void) {
        state.withLock { s in
            s.lossTranslators[node] = translate
            s.lossWatchers[node, default: []].append(onLost)
        }
    }

    /// Stops supervising `node` (its mesh was stopped).
    func unsupervise(_ node: NodeID) {
        state.withLock { s in
            s.lossTranslators.removeValue(forKey: node)
            s.lossWatchers.removeValue(forKey: node)
        }
    }

    /// Runs the loss watchers of `node`.
    func notifyLost(_ node: NodeID, reason: String) {
        let watchers = state.withLock { $0.lossWatchers[node] ?? [] }
        for w in watchers { w(reason) }
    }
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
