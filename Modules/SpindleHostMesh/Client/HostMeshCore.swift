import Logging
import SpindleKernel
import Synchronization

/// What a host mesh and its slices share: one control channel (a reliable link in the attach's
/// session) per host, which hosts answer, the attach's config, the proc meshes that pushes
/// are routed to, and the event stream.
final class HostMeshCore: Sendable {
    /// A proc mesh spawned on this core, remembered even after its `ProcMesh` is released so
    /// `shutdown()` can stop it.
    struct Record: Sendable {
        var name: String
        var perHost: Int
        var coreRanks: Range<Int>
        /// The `HostMesh` handle it was spawned through (a slice stops only its own).
        var spawnedBy: UInt64
        var options: SpawnOptions
    }

    private struct WeakProcMesh {
        weak var mesh: ProcMesh?
    }

    private struct State {
        var channels: [ControlChannel?]
        /// Hosts answering (connected, not declared lost).
        var up: [Bool]
        /// Hosts declared lost (or whose session ended) and not back yet.
        var lost: [Bool]
        var procMeshes: [String: WeakProcMesh] = [:]
        var records: [String: Record] = [:]
        var config: ConfigSnapshot
        var attached = false
        var shutDown = false
    }

    let name: String
    let hosts: [Address]
    let transport: any Transport
    let configuration: HostMesh.Configuration
    /// The attach: every host sees this session, and owns what it creates under it.
    let session: SessionID
    let events = Broadcast<MeshEvent>()
    let metrics: MeshMetrics
    private let state: Mutex<State>
    private let handles = Atomic<UInt64>(1)

    init(name: String, hosts: [Address], config: ConfigSnapshot, transport: any Transport,
         configuration: HostMesh.Configuration) {
        self.name = name
        self.hosts = hosts
        self.transport = transport
        self.configuration = configuration
        session = SessionID.generate()
        metrics = MeshMetrics(dimensions: [("role", "client"), ("mesh", name)], factory: configuration.metricsFactory)
        state = Mutex(State(channels: Array(repeating: nil, count: hosts.count),
                            up: Array(repeating: false, count: hosts.count),
                            lost: Array(repeating: false, count: hosts.count), config: config))
    }

    var logger: Logger { configuration.logger }

    /// A new id for a `HostMesh` handle.
    func nextHandle() -> UInt64 { handles.add(1, ordering: .relaxed).newValue }

    /// The configuration of every control link.
    var linkConfiguration: ReliableLink.Configuration {
        var c = ReliableLink.Configuration()
        c.core.livenessBound = configuration.livenessBound
        c.core.heartbeatInterval = configuration.heartbeatInterval
        c.logger = configuration.logger
        return c
    }

    /// Opens the channel to host `rank` (failing fast if it cannot connect before its first
    /// handshake: an attach wants to know).
    func connect(_ rank: Int) -> ControlChannel {
        let channel = ControlChannel.connect(
            over: transport, to: hosts[rank], session: session, configuration: linkConfiguration, logger: logger,
            failFast: true,
            onMessage: { [weak self] channel, message, correlation in
                self?.pushed(message, correlation: correlation, from: channel, rank: rank)
            },
            onEvent: { [weak self] _, event in
                self?.linkEvent(event, rank: rank)
            },
            onLateReply: { [weak self] in self?.metrics.lateReplies.add() })
        state.withLock { $0.channels[rank] = channel }
        return channel
    }

    func channel(_ rank: Int) -> ControlChannel? { state.withLock { $0.channels[rank] } }

    var isShutDown: Bool { state.withLock { $0.shutDown } }

    /// Whether host `rank` answers.
    func isUp(_ rank: Int) -> Bool { state.withLock { $0.up[rank] } }

    /// The attach succeeded: from now on a host that comes back gets the config again.
    func markAttached() {
        let up = state.withLock { s -> Int in
            s.attached = true
            return s.up.filter { $0 }.count
        }
        metrics.hostsUp.set(up)
    }

    /// The attach's current config (what a host that comes back is given).
    var config: ConfigSnapshot {
        get { state.withLock { $0.config } }
        set { state.withLock { $0.config = newValue } }
    }

    /// Registers a proc mesh; false if the name is taken by a live one.
    func register(_ mesh: ProcMesh, record: Record) -> Bool {
        state.withLock { s in
            if s.records[mesh.name] != nil { return false }
            s.procMeshes[mesh.name] = WeakProcMesh(mesh: mesh)
            s.records[mesh.name] = record
            return true
        }
    }

    func unregister(_ mesh: ProcMesh) {
        state.withLock { s in
            if s.procMeshes[mesh.name]?.mesh === mesh || s.procMeshes[mesh.name]?.mesh == nil {
                s.procMeshes[mesh.name] = nil
                s.records[mesh.name] = nil
            }
        }
    }

    /// The live proc meshes (their objects, made again for those whose `ProcMesh` was
    /// released) that `filter` selects.
    func procMeshes(where filter: (Record) -> Bool, owner: HostMeshOwner) -> [ProcMesh] {
        state.withLock { s in
            s.records.values.filter(filter).map { r in
                if let m = s.procMeshes[r.name]?.mesh { return m }
                let m = ProcMesh(record: r, core: self, owner: owner)
                s.procMeshes[r.name] = WeakProcMesh(mesh: m)
                return m
            }
        }
    }

    /// Marks the core shut down and closes every channel (gracefully: each agent learns the
    /// session is over and stops its procs).
    func closeAll() {
        let channels = state.withLock { s -> [ControlChannel] in
            s.shutDown = true
            s.procMeshes.removeAll()
            s.records.removeAll()
            return s.channels.compactMap { $0 }
        }
        for c in channels { c.close() }
        events.finish()
    }

    /// Closes every channel and waits until each is closed.
    func shutdownChannels() async {
        let channels = state.withLock { s -> [ControlChannel] in
            s.shutDown = true
            return s.channels.compactMap { $0 }
        }
        await withTaskGroup(of: Void.self) { group in
            for c in channels { group.addTask { await c.shutdown() } }
        }
        events.finish()
    }

    // MARK: - From the agents

    private func pushed(_ message: HostMeshMessage, correlation: UInt64, from channel: ControlChannel, rank: Int) {
        switch message {
        case .procState(let status):
            let mesh = state.withLock { $0.procMeshes[status.mesh]?.mesh }
            mesh?.update(status, hostRank: rank)
            events.publish(.stateChanged(status))
        case .procDied(let death):
            let mesh = state.withLock { $0.procMeshes[death.status.mesh]?.mesh }
            mesh?.died(death, hostRank: rank)
            events.publish(.died(death))
        case .procOutput(let output):
            let mesh = state.withLock { $0.procMeshes[output.mesh]?.mesh }
            mesh?.output(output, hostRank: rank)
        default:
            logger.warning("unexpected message from agent", metadata: ["host": "\(hosts[rank])", "kind": "\(message.kind)"])
            if correlation != 0 {
                channel.sendOrLog(.failure("a host-mesh client does not accept message kind \(message.kind)"), replyTo: correlation)
            }
        }
    }

    private func linkEvent(_ event: ReliableLinkEvent, rank: Int) {
        switch event {
        case .connected:
            let comeBack = state.withLock { s -> Bool in
                if s.shutDown { return false }
                if !s.attached || !s.lost[rank] {
                    s.up[rank] = true
                    return false
                }
                return true
            }
            if comeBack { Task { await self.hostCameBack(rank) } }
        case .peerLost(let why):
            hostLost(rank, reason: "no answer within the liveness bound (\(why))")
        case .peerRestarted:
            hostLost(rank, reason: "the agent restarted or ended the session")
        case .peerClosed:
            hostLost(rank, reason: "the agent closed the session")
        }
    }

    /// The host stopped answering, restarted or closed: its pending calls have failed (the
    /// channel fails them), its ranks become `hostLost`, subscribers are told.
    private func hostLost(_ rank: Int, reason: String) {
        let (meshes, report, up) = state.withLock { s -> ([ProcMesh], Bool, Int) in
            let wasUp = s.up[rank] || !s.lost[rank]
            s.up[rank] = false
            s.lost[rank] = true
            let report = wasUp && !s.shutDown
            return (s.procMeshes.values.compactMap(\.mesh), report, s.up.filter { $0 }.count)
        }
        guard report else { return }
        metrics.hostsLost.add()
        metrics.hostsUp.set(up)
        logger.warning("host lost", metadata: ["host": "\(hosts[rank])", "reason": "\(reason)"])
        events.publish(.hostLost(host: hosts[rank], hostRank: rank, reason: reason))
        for m in meshes {
            for st in m.hostLost(coreRank: rank, reason: reason) { events.publish(.stateChanged(st)) }
        }
    }

    /// A lost host answers again: give it the attach's config, then report it back.
    private func hostCameBack(_ rank: Int) async {
        guard let channel = channel(rank) else { return }
        let config = self.config
        do {
            let reply = try await channel.request(.installConfig(config), timeout: configuration.requestTimeout)
            guard case .configInstalled(let digest) = reply, digest == config.digest else {
                logger.warning("host came back but did not install the config", metadata: ["host": "\(hosts[rank])", "reply": "\(reply)"])
                return
            }
        } catch {
            logger.warning("host came back but the config push failed", metadata: ["host": "\(hosts[rank])", "error": "\(error)"])
            return
        }
        metrics.configPushes.add()
        let (meshes, up) = state.withLock { s -> ([ProcMesh], Int) in
            s.up[rank] = true
            s.lost[rank] = false
            return (s.procMeshes.values.compactMap(\.mesh), s.up.filter { $0 }.count)
        }
        metrics.hostsBack.add()
        metrics.hostsUp.set(up)
        logger.info("host back", metadata: ["host": "\(hosts[rank])"])
        for m in meshes { m.hostBack(coreRank: rank) }
        events.publish(.hostBack(host: hosts[rank], hostRank: rank))
    }
}

/// Keeps a host mesh's channels open while anything can use them (the `HostMesh`, its
/// slices, the proc meshes spawned on them); closes them when the last is released.
final class HostMeshOwner: Sendable {
    let core: HostMeshCore
    init(core: HostMeshCore) { self.core = core }
    deinit { core.closeAll() }
}
