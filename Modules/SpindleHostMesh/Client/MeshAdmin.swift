import Logging
import SpindleKernel
import Synchronization

/// An operator's view over several host meshes: their hosts de-duplicated in first-seen
/// order, each asked over a short-lived control channel of its own (a session of its own:
/// it sees only the detached proc meshes, never another client's procs).
public struct MeshAdmin: Sendable {
    /// One host's answer.
    public struct HostReport: Sendable, Hashable {
        public var host: Address
        /// The meshes (by name, in the order given) that include this host.
        public var meshes: [String]
        /// What the agent reported, or why it could not be asked.
        public var result: Result<AgentInfo, LinkFailure>

        public static func == (a: Self, b: Self) -> Bool {
            a.host == b.host && a.meshes == b.meshes && "\(a.result)" == "\(b.result)"
        }

        public func hash(into h: inout Hasher) { h.combine(host) }
    }

    /// One host's answer about a detached proc mesh: its procs there, or why it could not be asked.
    public struct DetachedReport: Sendable {
        public var host: Address
        public var result: Result<[ProcStatus], LinkFailure>
    }

    public let meshes: [HostMeshRef]
    public let logger: Logger

    public init(meshes: [HostMeshRef], logger: Logger = Logger(label: "spindle.mesh-admin")) {
        self.meshes = meshes
        self.logger = logger
    }

    /// Every host of every mesh, each once, in first-seen order.
    public var hosts: [Address] {
        var seen = Set<Address>()
        var out: [Address] = []
        for m in meshes {
            for h in m.hosts where seen.insert(h).inserted { out.append(h) }
        }
        return out
    }

    /// Asks every host's agent for its state, all at once, each within `timeout`.
    public func status(transport: any Transport, timeout: Duration = .seconds(5),
                       logger: Logger = Logger(label: "spindle.mesh-admin")) async -> [HostReport] {
        let results = await askAll(.agentInfo, transport: transport, timeout: timeout) { reply -> Result<AgentInfo, LinkFailure> in
            if case .info(let info) = reply { return .success(info) }
            return .failure(.closed("unexpected reply kind \(reply.kind)"))
        }
        return hosts.enumerated().map { i, h in
            HostReport(host: h, meshes: meshes.filter { $0.hosts.contains(h) }.map(\.name), result: results[i])
        }
    }

    /// The procs of every detached proc mesh on each host.
    public func detached(transport: any Transport, timeout: Duration = .seconds(5)) async -> [DetachedReport] {
        let results = await askAll(.listDetached, transport: transport, timeout: timeout) { reply -> Result<[ProcStatus], LinkFailure> in
            if case .detached(let procs) = reply { return .success(procs) }
            return .failure(.closed("unexpected reply kind \(reply.kind)"))
        }
        return zip(hosts, results).map { DetachedReport(host: $0, result: $1) }
    }

    /// Stops the detached proc mesh `name` on every host (SIGTERM to each proc's group, grace,
    /// SIGKILL) and returns each host's final states once its procs have all ended. A host
    /// without such a mesh answers an empty list.
    /// - Parameter timeout: per host: connecting, and waiting for the procs to end.
    public func stopDetached(_ name: String, transport: any Transport, timeout: Duration = .seconds(30)) async -> [DetachedReport] {
        let results = await askAll(.stopDetached(mesh: name), transport: transport, timeout: timeout) { reply -> Result<[ProcStatus], LinkFailure> in
            if case .detachedStopped(_, let procs) = reply { return .success(procs) }
            if case .failure(let why) = reply { return .failure(.closed(why)) }
            return .failure(.closed("unexpected reply kind \(reply.kind)"))
        }
        return zip(hosts, results).map { DetachedReport(host: $0, result: $1) }
    }

    /// The output of a detached proc mesh: what each agent kept (its last
    /// `HostAgent.Limits.retainedLogLines` lines per proc), then, with `follow`, what the
    /// procs write until they have all ended.
    public func logs(of name: String, follow: Bool, transport: any Transport, timeout: Duration = .seconds(10),
                     bufferLines: Int = 10_000) async -> MeshLogs {
        await MeshLogs.open(name, hosts: hosts, follow: follow, transport: transport, timeout: timeout,
                            bufferLines: bufferLines, logger: logger)
    }

    private func askAll<T: Sendable>(_ message: HostMeshMessage, transport: any Transport, timeout: Duration,
                                     _ decode: @escaping @Sendable (HostMeshMessage) -> Result<T, LinkFailure>) async -> [Result<T, LinkFailure>] {
        let hosts = self.hosts
        let logger = self.logger
        return await withTaskGroup(of: (Int, Result<T, LinkFailure>).self) { group in
            for (i, host) in hosts.enumerated() {
                group.addTask {
                    let channel = MeshAdmin.channel(to: host, transport: transport, logger: logger)
                    defer { channel.close() }
                    do throws(LinkFailure) {
                        return (i, decode(try await channel.request(message, timeout: timeout)))
                    } catch {
                        return (i, .failure(error))
                    }
                }
            }
            var out = [Result<T, LinkFailure>](repeating: .failure(.timedOut(timeout)), count: hosts.count)
            for await (i, r) in group { out[i] = r }
            return out
        }
    }

    /// A short-lived control channel to one agent (fails fast when it cannot connect).
    static func channel(to host: Address, transport: any Transport, logger: Logger,
                        onMessage: @escaping ControlChannel.MessageHandler = { _, _, _ in },
                        onEvent: ControlChannel.EventHandler? = nil) -> ControlChannel {
        ControlChannel.connect(over: transport, to: host, configuration: ReliableLink.Configuration(logger: logger),
                               logger: logger, failFast: true, onMessage: onMessage, onEvent: onEvent)
    }

    /// The reports as a text table: one row per proc, or one per host without procs.
    public static func table(_ reports: [HostReport]) -> String {
        var rows: [[String]] = [["HOST", "MESHES", "AGENT", "PROC MESH", "RANK", "STATE", "PID", "RESTARTS"]]
        for r in reports {
            let meshes = r.meshes.joined(separator: ",")
            switch r.result {
            case .failure(let f):
                rows.append([r.host.description, meshes, "unreachable: \(f)", "-", "-", "-", "-", "-"])
            case .success(let info):
                let agent = "pid \(info.pid), \(info.clientSessions) client\(info.clientSessions == 1 ? "" : "s")"
                    + (info.detachedMeshes.isEmpty ? "" : ", detached: \(info.detachedMeshes.joined(separator: ","))")
                if info.procs.isEmpty {
                    rows.append([r.host.description, meshes, agent, "-", "-", "-", "-", "-"])
                }
                for p in info.procs {
                    let detached = info.detachedMeshes.contains(p.mesh) ? " (detached)" : ""
                    rows.append([r.host.description, meshes, agent, p.mesh + detached, String(p.rank),
                                 p.state.description, p.pid.map(String.init) ?? "-", String(p.restarts)])
                }
            }
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { c, cell in
                c == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[c] - cell.count)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// The output of a proc mesh read through `MeshAdmin.logs(of:follow:…)`.
public struct MeshLogs: Sendable {
    /// Hosts that could not be asked, and why.
    public var failures: [(host: Address, failure: LinkFailure)]
    /// The procs' states as the hosts reported them when asked, by rank.
    public var states: [ProcStatus]
    /// The lines: first what the agents kept, then (following) what comes, until every proc
    /// has ended (or its host is lost).
    public var lines: BufferedSequence<ProcLog>

    static func open(_ name: String, hosts: [Address], follow: Bool, transport: any Transport, timeout: Duration,
                     bufferLines: Int, logger: Logger) async -> MeshLogs {
        let follower = LogFollower(hosts: hosts.count)
        let broadcast = Broadcast<ProcLog>()
        let id = broadcast.subscribe(capacity: bufferLines)
        var channels: [ControlChannel] = []
        for (i, host) in hosts.enumerated() {
            channels.append(MeshAdmin.channel(
                to: host, transport: transport, logger: logger,
                onMessage: { _, message, _ in
                    switch message {
                    case .procOutput(let o) where o.mesh == name:
                        broadcast.publishMissed(o.dropped)
                        for l in o.lines { broadcast.publish(.line(l)) }
                    case .procState(let st) where st.mesh == name:
                        if follower.update(host: i, st) { broadcast.finish() }
                    default:
                        break
                    }
                },
                onEvent: { _, event in
                    switch event {
                    case .peerLost, .peerRestarted, .peerClosed:
                        if follower.hostDone(i) { broadcast.finish() }
                    case .connected:
                        break
                    }
                }))
        }
        let replies = await withTaskGroup(of: (Int, Result<HostMeshMessage, LinkFailure>).self) { group in
            for (i, c) in channels.enumerated() {
                group.addTask {
                    do throws(LinkFailure) {
                        return (i, .success(try await c.request(.readLogs(mesh: name, detached: true, follow: follow), timeout: timeout)))
                    } catch {
                        return (i, .failure(error))
                    }
                }
            }
            var out: [(Int, Result<HostMeshMessage, LinkFailure>)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        var failures: [(host: Address, failure: LinkFailure)] = []
        var states: [ProcStatus] = []
        var retained: [ProcLog] = []
        for (i, r) in replies {
            switch r {
            case .success(.logs(_, let outputs, let statuses)):
                for o in outputs { retained += o.lines.map { ProcLog.line($0) } }
                states += statuses
                follower.start(host: i, statuses)
            case .success(let other):
                failures.append((hosts[i], .closed("unexpected reply kind \(other.kind)")))
                follower.start(host: i, [])
            case .failure(let f):
                failures.append((hosts[i], f))
                follower.start(host: i, [])
            }
        }
        // Retained lines first: a subscription of their own, followed by the live one.
        let all = Broadcast<ProcLog>()
        let allID = all.subscribe(capacity: bufferLines + retained.count, initial: retained)
        let opened = channels
        let closeAll = { @Sendable in for c in opened { c.close() } }
        if !follow || follower.allDone {
            closeAll()
            broadcast.unsubscribe(id)
            all.finish()
            return MeshLogs(failures: failures, states: states.sorted { $0.rank < $1.rank },
                            lines: BufferedSequence(all, subscription: allID, element: MeshLogs.element, onEnd: {}))
        }
        // Pump the live lines behind the retained ones, then end.
        let pump = Task {
            while let item = await broadcast.next(id) {
                switch item {
                case .element(let l): all.publish(l)
                case .missed(let n): all.publishMissed(n)
                }
            }
            all.finish()
            closeAll()
        }
        return MeshLogs(failures: failures, states: states.sorted { $0.rank < $1.rank },
                        lines: BufferedSequence(all, subscription: allID, element: MeshLogs.element, onEnd: {
                            pump.cancel()
                            broadcast.unsubscribe(id)
                            closeAll()
                        }))
    }

    @Sendable static func element(_ item: BoundedBuffer<ProcLog>.Item) -> ProcLog {
        switch item {
        case .element(let l): return l
        case .missed(let n): return .dropped(n)
        }
    }
}

/// Tracks which followed procs have ended, per host.
final class LogFollower: Sendable {
    private struct State {
        var live: [[Int: Bool]]
        var started: [Bool]
        var done: [Bool]
    }
    private let state: Mutex<State>

    init(hosts: Int) {
        state = Mutex(State(live: Array(repeating: [:], count: hosts), started: Array(repeating: false, count: hosts),
                            done: Array(repeating: false, count: hosts)))
    }

    /// The host's procs as it first reported them.
    func start(host: Int, _ statuses: [ProcStatus]) {
        state.withLock { s in
            s.started[host] = true
            for st in statuses where s.live[host][st.rank] == nil { s.live[host][st.rank] = !st.state.isTerminal }
            if !s.live[host].values.contains(true) { s.done[host] = true }
        }
    }

    /// A state pushed by a host; true when every host is now done.
    func update(host: Int, _ st: ProcStatus) -> Bool {
        state.withLock { s in
            s.live[host][st.rank] = !st.state.isTerminal
            if s.started[host], !s.live[host].values.contains(true) { s.done[host] = true }
            return s.done.allSatisfy { $0 }
        }
    }

    /// The host is gone; true when every host is now done.
    func hostDone(_ host: Int) -> Bool {
        state.withLock { s in
            s.done[host] = true
            return s.done.allSatisfy { $0 }
        }
    }

    var allDone: Bool { state.withLock { $0.done.allSatisfy { $0 } } }
}
