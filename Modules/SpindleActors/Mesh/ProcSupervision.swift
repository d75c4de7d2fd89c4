import SpindleHostMesh
import SpindleKernel
import Synchronization

/// Where an actor mesh learns how its procs are: each rank's state as its agent reports it.
///
/// The production source follows the host mesh's supervision events (`ProcMesh.events()`);
/// tests may feed a mesh supervisor by hand. An actor mesh also learns of a dead proc from its
/// own links (`SpindleActorSystem.supervise`), whichever comes first.
protocol ProcSupervisionSource: Sendable {
    /// Each rank's state when it changes (the current states first).
    func updates() -> AsyncStream<(rank: Int, state: ProcState)>
    /// The latest state known for `rank`.
    func lastKnown(rank: Int) -> ProcState
}

/// Follows a proc mesh's supervision events: state changes and deaths as its agents report
/// them. A subscriber that fell behind (`.missed`) reads every rank's state again.
struct ProcMeshEvents: ProcSupervisionSource {
    let procs: ProcMesh

    func updates() -> AsyncStream<(rank: Int, state: ProcState)> {
        let procs = self.procs
        // Subscribe before reading the current states, so no change falls in between.
        let events = procs.events()
        return AsyncStream { continuation in
            let task = Task.detached {
                func all() {
                    for (rank, status) in procs.lastKnown.enumerated() { continuation.yield((rank, status.state)) }
                }
                all()
                for await event in events {
                    switch event {
                    case .stateChanged(let status): continuation.yield((status.rank, status.state))
                    case .died(let death): continuation.yield((death.rank, death.status.state))
                    case .missed: all()
                    case .hostLost, .hostBack: break   // the procs' own links tell
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in
                task.cancel()
                events.cancel()
            }
        }
    }

    func lastKnown(rank: Int) -> ProcState {
        let states = procs.lastKnown
        return rank < states.count ? states[rank].state : .timeout
    }
}

/// Watches the procs of one actor mesh (shared by its slices): marks a rank dead on its
/// node's actor system when its proc dies, and broadcasts `ActorMeshEvent`s.
final class MeshSupervisor: Sendable {
    private struct State {
        var dead: [Int: ProcState] = [:]
        var subscribers: [UInt64: AsyncStream<ActorMeshEvent>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0
        var watcher: Task<Void, Never>?
        var stopped = false
        /// The system's supervision tokens, by node.
        var tokens: [NodeID: UInt64] = [:]
    }

    let system: SpindleActorSystem
    let nodes: [Int: NodeID]
    let source: any ProcSupervisionSource
    private let state = Mutex(State())

    init(system: SpindleActorSystem, nodes: [Int: NodeID], source: any ProcSupervisionSource) {
        self.system = system
        self.nodes = nodes
        self.source = source
    }

    /// Starts watching the source and the ranks' links.
    func start() {
        for (rank, node) in nodes {
            let token = system.supervise(node, translate: { [weak self] reason in
                .procDied(rank: rank, state: self?.deathState(rank, reason: reason) ?? .failed(reason: reason))
            }, onLost: { [weak self] reason in
                guard let self else { return }
                self.died(rank, state: self.deathState(rank, reason: reason))
            })
            state.withLock { $0.tokens[node] = token }
        }
        let updates = source.updates()
        let task = Task.detached { [weak self] in
            for await (rank, procState) in updates {
                guard let self else { return }
                self.observed(rank, procState)
            }
        }
        state.withLock { $0.watcher = task }
    }

    /// The state to report for a rank whose link was lost: its agent's terminal state if it
    /// has one, otherwise a failure naming the loss.
    private func deathState(_ rank: Int, reason: String) -> ProcState {
        let known = source.lastKnown(rank: rank)
        return known.isTerminal ? known : .failed(reason: "lost: \(reason)")
    }

    private func observed(_ rank: Int, _ procState: ProcState) {
        broadcast(.procState(rank: rank, state: procState))
        if procState.isTerminal { died(rank, state: procState) }
    }

    /// Records that `rank` died (once): its calls fail with `.procDied` from now on.
    func died(_ rank: Int, state procState: ProcState) {
        let first = state.withLock { s -> Bool in
            guard !s.stopped, s.dead[rank] == nil else { return false }
            s.dead[rank] = procState
            return true
        }
        guard first, let node = nodes[rank] else { return }
        system.markDead(node, with: .procDied(rank: rank, state: procState))
        broadcast(.procDied(rank: rank, state: procState))
    }

    func deadState(_ rank: Int) -> ProcState? { state.withLock { $0.dead[rank] } }

    func events() -> AsyncStream<ActorMeshEvent> {
        let (stream, continuation) = AsyncStream<ActorMeshEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        let (id, dead) = state.withLock { s -> (UInt64?, [Int: ProcState]) in
            guard !s.stopped else { return (nil, [:]) }
            let id = s.nextSubscriber
            s.nextSubscriber += 1
            s.subscribers[id] = continuation
            return (id, s.dead)
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        // A late subscriber learns of the deaths it missed.
        for (rank, st) in dead.sorted(by: { $0.key < $1.key }) { continuation.yield(.procDied(rank: rank, state: st)) }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    private func broadcast(_ event: ActorMeshEvent) {
        let subscribers = state.withLock { Array($0.subscribers.values) }
        for s in subscribers { s.yield(event) }
    }

    /// Stops watching; ends every event stream.
    func stop() {
        let (task, subscribers, tokens) = state.withLock { s in
            s.stopped = true
            defer { s.watcher = nil; s.subscribers = [:]; s.tokens = [:] }
            return (s.watcher, Array(s.subscribers.values), s.tokens)
        }
        task?.cancel()
        for s in subscribers { s.finish() }
        for (node, token) in tokens { system.unsupervise(node, token: token) }
    }

    deinit {
        // The mesh (and its slices) were let go without `stop()`.
        let (task, tokens) = state.withLock { ($0.watcher, $0.tokens) }
        task?.cancel()
        for (node, token) in tokens { system.unsupervise(node, token: token) }
    }
}
