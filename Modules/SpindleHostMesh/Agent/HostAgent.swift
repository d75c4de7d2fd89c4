import DequeModule
import Logging
import SpindleEventLoop
import SpindleKernel
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The agent on one host: keeps each client session's config, starts and supervises procs,
/// and streams their states and output to the session that owns them.
///
/// ```
///  client ─reliable link─▶ HostAgent ──uv_spawn──▶ spindle-keeper ──fork──▶ proc (own process group)
///         ◀── replies, procState / procDied / procOutput pushes ── │   ◀── procHello / procReady ──┘
/// ```
/// Every client and proc talks to the agent over a kernel `ReliableLink` (heartbeats and a
/// liveness bound): a client that stops answering is declared lost within the bound, and its
/// procs are stopped. Procs, proc-mesh names and config belong to the client session (the
/// attach) that created them; detached proc meshes belong to the cluster. Each proc runs
/// under a `spindle-keeper` in its own process group, so stopping it stops its whole group and
/// nothing it started outlives the agent, even under SIGKILL (docs/hostmesh.md).
///
/// Run it in-process (`HostAgent(on:transport:configuration:)` then `start()`) or as the
/// `spindle host-agent` daemon.
public final class HostAgent: Sendable {
    /// Who owns a proc: the client session that spawned it, or (detached) the cluster.
    enum ProcOwner: Hashable, Sendable, Comparable {
        case session(SessionID)
        case cluster

        static func < (a: ProcOwner, b: ProcOwner) -> Bool {
            switch (a, b) {
            case (.session(let x), .session(let y)): return x < y
            case (.session, .cluster): return true
            default: return false
            }
        }
    }

    struct ProcKey: Hashable, Sendable, Comparable {
        var owner: ProcOwner
        var mesh: String
        var rank: Int

        static func < (a: ProcKey, b: ProcKey) -> Bool {
            if a.mesh != b.mesh { return a.mesh < b.mesh }
            if a.rank != b.rank { return a.rank < b.rank }
            return a.owner < b.owner
        }
    }

    /// How to start a proc (again, on a restart).
    struct LaunchSpec: Sendable {
        var executable: String
        var argv0: String
        var arguments: [String]
        var environment: [String: String]
    }

    struct ProcEntry: Sendable {
        /// Identifies this entry (a later spawn of the same key makes a new one).
        var serial: UInt64
        /// Identifies the current start of the proc (callbacks of an earlier child are ignored).
        var start: UInt64 = 0
        var lifecycle: ProcLifecycle
        var launch: LaunchSpec
        var token: String
        /// The session that spawned it: its pushes go there while it lives.
        var notify: SessionID?
        /// Sessions following its output (`readLogs` with `follow`).
        var followers: Set<SessionID> = []
        /// The config it was spawned with (a detached proc keeps reading this one).
        var config: ConfigSnapshot
        var child: ChildProcess?
        var exit: ExitStatus?
        var openStreams = 0
        var headerSeen = false
        var stdout: LineAssembler
        var stderr: LineAssembler
        var tail: TailBuffer
        /// The last output lines, for `readLogs`.
        var recent: Deque<ProcLogLine> = []
        /// Output lines dropped per receiving session since its last push.
        var dropped: [SessionID: Int] = [:]
        var wasStarted = false
        var finishedAt: MonotonicInstant?
        var timers: [LoopTimer] = []

        func status(_ key: ProcKey) -> ProcStatus {
            ProcStatus(mesh: key.mesh, rank: key.rank, state: lifecycle.state, pid: lifecycle.pid,
                       restarts: lifecycle.restarts, stderrTail: lifecycle.state.isTerminal ? tail.tail : [])
        }
    }

    /// What a session (a reliable link's peer) is to the agent.
    enum Role: Sendable, Equatable {
        case unknown
        case client
        case proc(ProcKey)
    }

    struct Session: Sendable {
        var channel: ControlChannel
        var config: ConfigSnapshot?
        var configOrder: UInt64 = 0
        var role: Role = .unknown
    }

    /// A `stopDetached` request waiting for its mesh's procs to end.
    struct DetachedStopWaiter: Sendable {
        var channel: ControlChannel
        var correlation: UInt64
    }

    struct State: Sendable {
        var sessions: [SessionID: Session] = [:]
        var procs: [ProcKey: ProcEntry] = [:]
        var tokens: [String: ProcKey] = [:]
        var listener: ReliableListener?
        var address: Address?
        var keeper: String?
        var started = false
        var shuttingDown = false
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        var detachedStops: [String: [DetachedStopWaiter]] = [:]
        var nextSerial: UInt64 = 1
        var nextStart: UInt64 = 1
        var nextConfigOrder: UInt64 = 1

        var allProcsFinal: Bool { procs.values.allSatisfy { $0.lifecycle.state.isTerminal } }

        func live(_ filter: (ProcKey) -> Bool) -> Int {
            procs.reduce(0) { n, kv in n + (!kv.value.lifecycle.state.isTerminal && filter(kv.key) ? 1 : 0) }
        }
    }

    let loop: EventLoop
    let transport: any Transport
    let configuration: Configuration
    let allowList: ProgramAllowList
    let state = Mutex(State())
    let metrics: MeshMetrics
    var logger: Logger { configuration.logger }

    /// Creates an agent; `start()` makes it listen.
    public init(on loop: EventLoop, transport: any Transport, configuration: Configuration = Configuration()) {
        self.loop = loop
        self.transport = transport
        self.configuration = configuration
        if let programs = configuration.allowedPrograms {
            allowList = ProgramAllowList(programs: programs)
        } else {
            allowList = .ownExecutable()
        }
        metrics = MeshMetrics(dimensions: [("role", "agent")], factory: configuration.metricsFactory)
    }

    /// The configuration of every control link.
    var linkConfiguration: ReliableLink.Configuration {
        var c = ReliableLink.Configuration()
        c.core.livenessBound = configuration.livenessBound
        c.core.heartbeatInterval = configuration.heartbeatInterval
        c.logger = configuration.logger
        return c
    }

    /// Listens on `configuration.listenAddress`.
    /// - Returns: the bound address (port 0 resolved).
    /// - Throws: `HostAgentError.insecureListen` for a non-loopback address without an
    ///   authenticating transport; `.keeperNotFound` without a `spindle-keeper`;
    ///   `.cannotListen` when the transport fails.
    @discardableResult
    public func start() async throws(HostAgentError) -> Address {
        let address = configuration.listenAddress
        guard address.isLoopback || configuration.transportAuthenticates else {
            logger.error("refused to listen: non-loopback address without a cluster key", metadata: ["address": "\(address)"])
            throw .insecureListen(address)
        }
        let keeper: String
        switch Keeper.locate(configured: configuration.keeperPath) {
        case .success(let k): keeper = k
        case .failure(let e):
            logger.error("no spindle-keeper", metadata: ["error": "\(e)"])
            throw e
        }
        let ok = state.withLock { s -> Bool in
            guard !s.started, !s.shuttingDown else { return false }
            s.started = true
            s.keeper = keeper
            return true
        }
        guard ok else { throw .notStartable("already started or shut down") }
        for p in allowList.unresolved {
            logger.warning("allow-list entry names no executable file", metadata: ["program": "\(p)"])
        }
        let listener: ReliableListener
        do {
            listener = try await ReliableListener.listen(over: transport, on: address, configuration: linkConfiguration) {
                [weak self] link in
                self?.accept(link) ?? ReliableLink.Handler(onDeliver: { _ in }, onUndeliverable: { _, _ in })
            }
        } catch {
            throw .cannotListen(error)
        }
        state.withLock {
            $0.listener = listener
            $0.address = listener.address
        }
        logger.info("host agent listening", metadata: [
            "address": "\(listener.address)", "keeper": "\(keeper)",
            "allowed": "\(allowList.realPaths.sorted().joined(separator: ","))",
        ])
        return listener.address
    }

    /// The bound address, once started.
    public var address: Address? { state.withLock { $0.address } }

    /// The config snapshot installed most recently by any client session (nil when no
    /// session holds one). Each session has its own: see `installedConfigs`.
    public var installedConfig: ConfigSnapshot? {
        state.withLock { s in s.sessions.values.filter { $0.config != nil }.max { $0.configOrder < $1.configOrder }?.config }
    }

    /// The config snapshot of every client session that installed one, oldest first.
    public var installedConfigs: [ConfigSnapshot] {
        state.withLock { s in s.sessions.values.filter { $0.config != nil }.sorted { $0.configOrder < $1.configOrder }.compactMap(\.config) }
    }

    /// Every proc the agent knows (every client's and the detached ones), ordered by mesh
    /// name and rank.
    public func procs() -> [ProcStatus] {
        state.withLock { s in s.procs.keys.sorted().map { s.procs[$0]!.status($0) } }
    }

    /// Counters since the agent was created (also published as `spindle_mesh_*` metrics).
    public var statistics: MeshStatistics { metrics.snapshot }

    /// Stops every proc (SIGTERM, then SIGKILL after the grace; detached ones too), waits until
    /// all have exited, and closes the listener and every link. Idempotent.
    public func shutdown() async {
        let keys = state.withLock { s -> [ProcKey] in
            s.shuttingDown = true
            return Array(s.procs.keys)
        }
        for key in keys { stopProc(key) }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                if s.allProcsFinal { return true }
                s.idleWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
        let (listener, waiters) = state.withLock { s -> (ReliableListener?, [DetachedStopWaiter]) in
            for k in s.procs.keys {
                for t in s.procs[k]!.timers { t.cancel() }
                s.procs[k]!.timers.removeAll()
            }
            defer {
                s.listener = nil
                s.detachedStops.removeAll()
            }
            return (s.listener, s.detachedStops.values.flatMap { $0 })
        }
        for w in waiters { w.channel.sendOrLog(.failure("the agent is shutting down"), replyTo: w.correlation) }
        await listener?.shutdown()
        state.withLock { $0.sessions.removeAll() }
        logger.info("host agent shut down")
    }

    /// The agent address procs connect back to (a wildcard host becomes loopback).
    var procFacingAddress: Address? {
        guard let a = address else { return nil }
        if case .tcp(let host, let port) = a {
            if host == "0.0.0.0" { return .tcp(host: "127.0.0.1", port: port) }
            if host == "::" { return .tcp(host: "::1", port: port) }
        }
        return a
    }

    // MARK: - Sessions

    private func accept(_ link: ReliableLink) -> ReliableLink.Handler {
        let id = link.session
        let (channel, handler) = ControlChannel.accepted(
            link, logger: logger,
            onMessage: { [weak self] channel, message, correlation in
                self?.handle(message, correlation: correlation, session: id, channel: channel)
            },
            onEvent: { [weak self] _, event in
                self?.sessionEvent(id, event)
            })
        state.withLock { s in
            if s.sessions[id] == nil { s.sessions[id] = Session(channel: channel) }
        }
        return handler
    }

    /// The session's entry, made again when a session that ended sends something (its link
    /// came back as a new incarnation).
    func session(_ id: SessionID, _ channel: ControlChannel, in s: inout State) -> Session {
        if let existing = s.sessions[id] { return existing }
        let fresh = Session(channel: channel)
        s.sessions[id] = fresh
        return fresh
    }

    private func sessionEvent(_ id: SessionID, _ event: ReliableLinkEvent) {
        switch event {
        case .connected:
            return
        case .peerLost(let why):
            sessionGone(id, why: "declared lost: \(why)")
        case .peerRestarted:
            sessionGone(id, why: "its peer started a new session")
        case .peerClosed:
            sessionGone(id, why: "closed by the peer")
        }
    }

    /// A session is over: forget its config, stop its procs (not the detached ones), and stop
    /// pushing to it.
    func sessionGone(_ id: SessionID, why: String) {
        let (orphaned, role) = state.withLock { s -> ([ProcKey], Role?) in
            let role = s.sessions.removeValue(forKey: id)?.role
            for k in s.procs.keys {
                s.procs[k]!.followers.remove(id)
                s.procs[k]!.dropped[id] = nil
            }
            let owned = s.procs.filter { $0.key.owner == .session(id) && !$0.value.lifecycle.state.isTerminal }.map(\.key)
            return (owned, role)
        }
        if role == .client || !orphaned.isEmpty {
            logger.info("client session ended", metadata: ["session": "\(id)", "reason": "\(why)", "procs": "\(orphaned.count)"])
        }
        guard configuration.stopProcsWhenClientLeaves else { return }
        for k in orphaned { stopProc(k) }
    }

    /// The channel of a live session.
    func channel(_ id: SessionID?) -> ControlChannel? {
        guard let id else { return nil }
        return state.withLock { $0.sessions[id]?.channel }
    }

    /// Wakes `shutdown()` once every proc is final. Call after a proc reached a final state.
    func resumeIdleWaitersIfDone() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard s.allProcsFinal else { return [] }
            defer { s.idleWaiters.removeAll() }
            return s.idleWaiters
        }
        for w in waiters { w.resume() }
    }
}
