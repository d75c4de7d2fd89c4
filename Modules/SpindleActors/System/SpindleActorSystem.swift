@_exported import Distributed
import Logging
import SpindleKernel
import Synchronization

/// Swift distributed actors over any kernel `Transport`, carried by reliable links.
///
/// ```
///  caller task ── remoteCall ──► [call] ══ reliable link ══► callee node: FIFO per
///       ▲                                                    (caller, actor) pair, runs
///       └──── resumes ◄── [reply] ◄══════════════════════════ executeDistributedTarget
/// ```
/// One system is one node: it listens (when configured) for links from other nodes and opens
/// one link per peer address it calls. Every call carries the caller's remaining deadline
/// (`withDeadline`, else `Configuration.callTimeout`); cancelling the calling task fails the
/// call with `.cancelled` and cancels the remote execution. A peer its link declares lost
/// (liveness bound), that restarts, or whose address refuses every reconnect fails its
/// pending calls with `.peerLost`. Errors a function throws arrive typed when `Codable`,
/// as `RemoteCallError` otherwise.
///
/// ```swift
/// let system = try await SpindleActorSystem(transport: tcp,
///     configuration: .init(listenAddress: .tcp(host: "127.0.0.1", port: 0)))
/// let counter = Counter(actorSystem: system)           // a `distributed actor`
/// let remote = try Counter.resolve(id: someID, using: system)
/// let n = try await withDeadline(.seconds(2)) { try await remote.add(1) }
/// await system.shutdown()
/// ```
public final class SpindleActorSystem: DistributedActorSystem, Sendable {
    public typealias ActorID = SpindleActors.ActorID
    public typealias InvocationEncoder = SpindleInvocationEncoder
    public typealias InvocationDecoder = SpindleInvocationDecoder
    public typealias ResultHandler = SpindleResultHandler
    public typealias SerializationRequirement = Codable

    /// This system's node id.
    public let node: NodeID
    /// The address this system listens on (port 0 resolved), or nil when it does not listen.
    public let address: Address?
    public let configuration: Configuration
    let transport: any Transport
    let state = Mutex(State())
    let listener: ReliableListener?
    let metrics: ActorSystemMetrics
    let logger: Logger
    let activity = LinkActivity()
    let timer: DeadlineTimer?
    var clock: any SpindleClock { configuration.clock }

    struct State {
        var isShutDown = false
        var nextActorNumber: UInt64 = 1
        var actors: [ActorID.Local: WeakActor] = [:]
        /// Well-known names reserved by `withWellKnownName` and not yet taken by an actor.
        var reservedNames: Set<String> = []
        var peers: [UInt64: PeerLink] = [:]
        var outboundByAddress: [Address: UInt64] = [:]
        /// Links other nodes opened to this one, by the node that opened them.
        var inboundByNode: [NodeID: UInt64] = [:]
        var nextLinkID: UInt64 = 1
        var calls = OutboundCalls<CallWaiter>()
        var inbound = InboundScheduler<InboundWork>()
        var running: [InboundCallKey: Task<Void, Never>] = [:]
        /// Nodes known dead (an actor mesh's supervision): calls fail with the error at once.
        var deadNodes: [NodeID: ActorCallError] = [:]
        /// Actor meshes supervising nodes: how a lost node's calls fail instead of `.peerLost`,
        /// and who wants to know that it was lost; by node, then token.
        var supervisions: [NodeID: [UInt64: Supervision]] = [:]
        var nextSupervision: UInt64 = 0
        /// Where procs of actor meshes register their hosts (on listening systems).
        var meshDirectory: MeshDirectory?
    }

    /// Creates a system and, when `configuration.listenAddress` is set, starts listening.
    /// - Throws: `TransportError` when the listen address cannot be bound.
    public init(transport: any Transport, configuration: Configuration = Configuration()) async throws(TransportError) {
        self.transport = transport
        self.configuration = configuration
        node = configuration.nodeID
        metrics = ActorSystemMetrics(node: configuration.nodeID, factory: configuration.metricsFactory)
        var logger = configuration.logger
        logger[metadataKey: "node"] = "\(configuration.nodeID)"
        self.logger = logger
        let forward = SystemForwarder()
        if let listenAddress = configuration.listenAddress {
            let l = try await ReliableListener.listen(over: transport, on: listenAddress,
                                                      configuration: configuration.effectiveLink) { link in
                forward.accepted(link)
            }
            listener = l
            address = l.address
        } else {
            listener = nil
            address = nil
        }
        timer = configuration.automaticTicks ? DeadlineTimer() : nil
        forward.attach(self)
        if address != nil {
            // Procs of actor meshes spawned from this process register here (`ActorHost`).
            let directory = try? withWellKnownName(MeshDirectory.wellKnownName) { MeshDirectory(actorSystem: self) }
            state.withLock { $0.meshDirectory = directory }
            ActorSystemRegistry.shared.add(self)
        }
    }

    /// Shuts the system down: pending calls fail with `.systemShutDown`, running executions
    /// are cancelled and awaited, every link is closed (gracefully: the peers learn that the
    /// session ended, and fail their calls to this node) and the listener stops. Afterwards
    /// calls fail with `.systemShutDown`. The transport is the caller's to shut down.
    public func shutdown() async {
        ActorSystemRegistry.shared.remove(self)
        var directory: MeshDirectory? = nil
        let (calls, running, peers) = state.withLock { s -> ([OutboundCalls<CallWaiter>.Call], [Task<Void, Never>], [PeerLink]) in
            s.isShutDown = true
            // It refers back to this system; released below, outside the lock (its deinit
            // resigns its id, which takes the lock).
            swap(&directory, &s.meshDirectory)
            let r = (s.calls.takeAll(), Array(s.running.values), s.peers.values.sorted { $0.id < $1.id })
            s.peers = [:]
            s.outboundByAddress = [:]
            s.inboundByNode = [:]
            return r
        }
        directory = nil
        for c in calls { fail(c, .systemShutDown) }
        for t in running { t.cancel() }
        timer?.cancel()
        await withTaskGroup(of: Void.self) { group in
            for p in peers { group.addTask { await p.link.shutdown() } }
            if let listener { group.addTask { await listener.shutdown() } }
        }
        for t in running { await t.value }
    }

    /// Counters of this system.
    public var statistics: Statistics { metrics.snapshot }

    // MARK: DistributedActorSystem

    public func assignID<Act>(_ actorType: Act.Type) -> ActorID where Act: DistributedActor, Act.ID == ActorID {
        let local: ActorID.Local = state.withLock { s in
            if let name = WellKnownName.pending, s.reservedNames.remove(name) != nil {
                return .name(name)
            }
            defer { s.nextActorNumber += 1 }
            return .number(s.nextActorNumber)
        }
        return ActorID(node: node, local: local, address: address)
    }

    public func actorReady<Act>(_ actor: Act) where Act: DistributedActor, Act.ID == ActorID {
        state.withLock { $0.actors[actor.id.local] = WeakActor(actor) }
    }

    public func resignID(_ id: ActorID) {
        state.withLock { s in
            // Called from the actor's deinit, when weak references to it already read nil: an
            // entry that still holds an actor belongs to a newer actor of the same name.
            if s.actors[id.local]?.actor == nil { s.actors.removeValue(forKey: id.local) }
        }
    }

    public func resolve<Act>(id: ActorID, as actorType: Act.Type) throws -> Act? where Act: DistributedActor, Act.ID == ActorID {
        guard id.node == node else { return nil }
        guard let found = localActor(id.local) else {
            // A reference to an actor that is gone (or not created yet): its calls are
            // dispatched locally and fail with `.actorNotFound` while it does not exist.
            return nil
        }
        guard let typed = found as? Act else {
            throw ActorCallError.invalidCall(actor: id, target: "resolve",
                                             reason: "the actor is a \(type(of: found)), not a \(Act.self)")
        }
        return typed
    }

    public func makeInvocationEncoder() -> SpindleInvocationEncoder {
        SpindleInvocationEncoder()
    }

    func localActor(_ local: ActorID.Local) -> (any DistributedActor)? {
        state.withLock { $0.actors[local]?.actor }
    }

    // MARK: Well-known names

    /// Creates an actor with a well-known name on this node: `make` must create it (the first
    /// actor created during `make` gets the name). Its id is `node/<name>`.
    ///
    /// ```swift
    /// let registry = try system.withWellKnownName("registry") { Registry(actorSystem: system) }
    /// ```
    /// - Throws: `ActorSystemError.invalidName` or `.nameInUse`, or what `make` throws.
    public func withWellKnownName<A: DistributedActor>(_ name: String, _ make: () throws -> A) throws -> A
        where A.ActorSystem == SpindleActorSystem {
        try reserve(name)
        defer { _ = state.withLock { $0.reservedNames.remove(name) } }
        return try WellKnownName.$pending.withValue(name) { try make() }
    }

    /// The async form of `withWellKnownName(_:_:)`.
    public func withWellKnownName<A: DistributedActor>(_ name: String, isolation: isolated (any Actor)? = #isolation,
                                                       _ make: () async throws -> A) async throws -> A
        where A.ActorSystem == SpindleActorSystem {
        try reserve(name)
        defer { _ = state.withLock { $0.reservedNames.remove(name) } }
        return try await WellKnownName.$pending.withValue(name, operation: make, isolation: isolation)
    }

    private func reserve(_ name: String) throws(ActorSystemError) {
        if let problem = ActorID.nameProblem(name.utf8) {
            throw .invalidName(name, problem: problem.text)
        }
        let taken = state.withLock { s -> Bool in
            if s.reservedNames.contains(name) || s.actors[.name(name)]?.actor != nil { return true }
            s.reservedNames.insert(name)
            return false
        }
        if taken { throw .nameInUse(name, node: node) }
    }

    /// The id of the actor named `name` on this node (whether or not it exists yet).
    public func wellKnownID(_ name: String) -> ActorID {
        ActorID(node: node, local: .name(name), address: address)
    }
}

/// A failure of an actor system operation other than a call.
public enum ActorSystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The name cannot be a well-known actor name.
    case invalidName(String, problem: String)
    /// An actor with this name exists on the node (or is being created).
    case nameInUse(String, node: NodeID)

    public var description: String {
        switch self {
        case .invalidName(let n, let p): return "\"\(n)\" cannot name an actor: \(p)"
        case .nameInUse(let n, let node): return "an actor named \"\(n)\" already exists on \(node)"
        }
    }
}

/// The name the next actor created in this task takes (`withWellKnownName`).
enum WellKnownName {
    @TaskLocal static var pending: String?
}

/// A local actor, held weakly: the system never keeps an actor alive.
final class WeakActor: Sendable {
    weak let actor: (any DistributedActor)?
    init(_ actor: any DistributedActor) { self.actor = actor }
}

/// Hands a listener's links and their events to the system once it exists: the listener is
/// bound before the system's initialiser finishes, and a peer may connect in between.
/// Whatever comes earlier waits, in order, and runs when the system attaches. Holds the
/// system weakly (the system holds the listener, which holds this).
final class SystemForwarder: Sendable {
    private struct State {
        weak var system: SpindleActorSystem?
        var attached = false
        /// Work that came before `attach` (or while it runs what came before).
        var pending: [@Sendable (SpindleActorSystem) -> Void] = []
        var draining = false
    }
    private let state = Mutex(State())

    /// The system, once attached and done with the early work; nil before (and once gone).
    private var ready: SpindleActorSystem? {
        state.withLock { $0.attached && !$0.draining ? $0.system : nil }
    }

    /// Runs `body` with the system now, or after `attach` in arrival order.
    private func run(_ body: @escaping @Sendable (SpindleActorSystem) -> Void) {
        let system: SpindleActorSystem? = state.withLock { s in
            if s.attached && !s.draining { return s.system }
            s.pending.append(body)
            return nil
        }
        system.map(body)
    }

    func attach(_ system: SpindleActorSystem) {
        state.withLock { s in
            s.system = system
            s.attached = true
            s.draining = true
        }
        while true {
            let batch = state.withLock { s -> [@Sendable (SpindleActorSystem) -> Void] in
                defer { s.pending = [] }
                if s.pending.isEmpty { s.draining = false }
                return s.pending
            }
            if batch.isEmpty { return }
            for body in batch { body(system) }
        }
    }

    /// The listener accepted `link`: registers it with the system and returns its handler.
    func accepted(_ link: ReliableLink) -> ReliableLink.Handler {
        let linkID = LinkIDCell()
        run { linkID.set($0.registerAccepted(link)) }
        return ReliableLink.Handler(
            onDeliver: { [self] e in
                if let s = ready, let id = linkID.id { return s.received(e, onLink: id) }
                run { s in linkID.id.map { s.received(e, onLink: $0) } }
            },
            onUndeliverable: { [self] es, why in
                run { s in linkID.id.map { s.undeliverable(es, why, onLink: $0) } }
            },
            onEvent: { [self] ev in
                run { s in linkID.id.map { s.linkEvent(ev, onLink: $0) } }
            })
    }
}

/// The system's id for an accepted link, set when the system registers it.
private final class LinkIDCell: Sendable {
    private let value = Atomic<UInt64>(0)
    var id: UInt64? {
        let v = value.load(ordering: .acquiring)
        return v == 0 ? nil : v
    }
    func set(_ id: UInt64) { value.store(id, ordering: .releasing) }
}
