import Logging
import Metrics
import SpindleKernel
import SpindleSupport
import Synchronization

/// An owned mesh of hosts: one control channel (a reliable link) to each host's agent, every
/// agent holding the client's config snapshot for this attach.
///
/// ```swift
/// let mesh = try await HostMesh.attach(name: "train", hosts: agents, config: snapshot,
///                                      timeout: .seconds(5), transport: tcp)
/// let procs = try await mesh.spawnProcs(name: "workers", perHost: 2) { rank in
///     BootstrapCommand(program: "/usr/local/bin/worker", arguments: ["--rank", "\(rank)"])
/// }
/// for await event in procs.events() { print(event) }   // supervision
/// try await procs.stop()
/// await mesh.shutdown()
/// ```
/// Attach keeps the host-mesh invariants: success means every host installed the snapshot
/// (HM-1); any failing host fails the attach, the config is removed from the hosts that
/// took it and every channel is closed (HM-2); request failures come back as the call's error
/// and nowhere else (HM-3); the error lists each failing host with its cause (HM-4).
///
/// The attach is a client session on each agent: its config, its procs and their names are
/// its own, invisible to other clients. A host that stops answering for the liveness bound
/// is declared lost (`MeshEvent.hostLost`); when it answers again the config is installed
/// again and `hostBack` follows.
public final class HostMesh: Sendable {
    /// Client-side timeouts, liveness and identity.
    public struct Configuration: Sendable {
        /// The longest quiet spell while spawning procs (re-armed by every state update).
        public var spawnIdleTimeout: Duration = .seconds(30)
        /// The longest quiet spell while stopping procs.
        public var stopIdleTimeout: Duration = .seconds(30)
        /// The longest quiet spell while querying proc states.
        public var stateIdleTimeout: Duration = .seconds(10)
        /// The timeout of single requests (a config push to a host that came back, ending
        /// the session at shutdown).
        public var requestTimeout: Duration = .seconds(10)
        /// Where procs can reach the client (`SPINDLE_CLIENT_ADDR`), if it listens somewhere.
        public var clientAddress: Address? = nil
        /// A host heard nothing from for this long is declared lost; its pending calls fail.
        public var livenessBound: Duration = .seconds(5)
        /// How often an idle link tells the peer it is alive.
        public var heartbeatInterval: Duration = .seconds(1)
        /// Events each `events()` subscriber may hold before it misses some (counted).
        public var eventBufferSize = 1024
        /// Output lines each `logs()` subscriber may hold before it misses some (counted);
        /// also the lines a proc mesh keeps for its first subscriber.
        public var logBufferLines = 10_000
        /// The largest program, arguments and environment of one proc (`BootstrapCommand.byteCount`)
        /// the client sends; an agent has its own limit too.
        public var maxBootstrapBytes = 1 << 20
        /// Where the `spindle_mesh_*` metrics go (nil: the global `MetricsSystem`).
        public var metricsFactory: (any MetricsFactory)? = nil
        public var logger = Logger(label: "spindle.host-mesh")
        public var clock: any SpindleClock = SystemClock()

        public init() {}
    }

    let core: HostMeshCore
    /// The core's hosts this mesh covers (all of them, or a slice).
    let coreRanks: Range<Int>
    /// True for the mesh `attach` returned (its `shutdown()` ends the session).
    let isRoot: Bool
    /// Keeps the channels open while this handle (or a proc mesh spawned through it) exists.
    let owner: HostMeshOwner
    /// This handle, for scoping `shutdown()` to what was spawned through it.
    let handle: UInt64

    init(owner: HostMeshOwner, coreRanks: Range<Int>, isRoot: Bool) {
        self.owner = owner
        self.core = owner.core
        self.coreRanks = coreRanks
        self.isRoot = isRoot
        self.handle = owner.core.nextHandle()
    }

    /// The mesh's name.
    public var name: String { core.name }
    /// The hosts' agent addresses in host-rank order.
    public var hosts: [Address] { Array(core.hosts[coreRanks]) }
    /// The printable, parseable reference to this mesh.
    public var ref: HostMeshRef {
        // The hosts were validated (distinct) when the mesh was attached.
        (try? HostMeshRef(name: name, hosts: hosts)) ?? HostMeshRef(unchecked: name, hosts: hosts)
    }

    /// The attach's session id (what each agent scopes this client's procs and config to).
    public var session: SessionID { core.session }

    /// Counters since the attach (also published as `spindle_mesh_*` metrics).
    public var statistics: MeshStatistics { core.metrics.snapshot }

    /// Whether the agent of host `rank` (of this mesh) answers.
    public func isHostUp(_ rank: Int) -> Bool { core.isUp(coreRanks.lowerBound + rank) }

    /// Supervision events of every proc mesh on this host mesh and of its hosts: state
    /// changes, deaths, hosts lost and back. Subscribes now; each subscriber has its own
    /// buffer of `eventBufferSize` events, and `.missed(n)` tells it what it lost by falling
    /// behind. Ends when the mesh shuts down.
    public func events() -> BufferedSequence<MeshEvent> {
        BufferedSequence(core.events, capacity: core.configuration.eventBufferSize) { item in
            switch item {
            case .element(let e): return e
            case .missed(let n): return .missed(n)
            }
        }
    }

    /// Connects to every host and installs `config` on each.
    ///
    /// - Parameters:
    ///   - name: the mesh's name (`A–Z a–z 0–9 . _ -`).
    ///   - hosts: the agents' addresses; zero hosts succeed at once.
    ///   - config: the snapshot every agent must install (for this client only).
    ///   - timeout: the deadline for connecting and acknowledging, for all hosts together.
    ///   - transport: the transport to reach the agents (TCP with a cluster key across machines).
    /// - Throws: `HostMeshError.configPush` listing each failing host with its cause
    ///   (unreachable, refused authentication, timed out, rejected config, connection lost);
    ///   `.invalidMesh` for a bad name or a duplicate host.
    public static func attach(name: String, hosts: [Address], config: ConfigSnapshot,
                              timeout: Duration = .seconds(10), transport: any Transport,
                              configuration: Configuration = Configuration()) async throws(HostMeshError) -> HostMesh {
        do {
            _ = try HostMeshRef(name: name, hosts: hosts)
        } catch {
            throw .invalidMesh(error)
        }
        let core = HostMeshCore(name: name, hosts: hosts, config: config, transport: transport, configuration: configuration)
        let owner = HostMeshOwner(core: core)
        let clock = configuration.clock
        let book = Locked(AttachBookkeeping(mesh: name, hosts: hosts, digest: config.digest, now: clock.now(), timeout: timeout))
        let remaining = { @Sendable in max(book.withLock { $0.deadline } - clock.now(), .milliseconds(1)) }
        await withTaskGroup(of: Void.self) { group in
            for rank in hosts.indices {
                let channel = core.connect(rank)
                _ = book.withLock { $0.connected(rank: rank) }
                group.addTask {
                    await push(config, over: channel, rank: rank, timeout: remaining(), total: timeout, book: book, core: core)
                }
            }
        }
        let result = book.withLock { b in
            _ = b.poll(now: b.deadline)
            return b.result
        }
        switch result {
        case .success?:
            core.markAttached()
            configuration.logger.info("attached host mesh", metadata: ["mesh": "\(name)", "hosts": "\(hosts.count)"])
            return HostMesh(owner: owner, coreRanks: 0..<hosts.count, isRoot: true)
        case .failure(let e)?:
            await abandon(core, installedOn: Array(hosts.indices), within: timeout)
            configuration.logger.warning("attach failed", metadata: ["mesh": "\(name)", "error": "\(e)"])
            throw .configPush(e)
        case nil:
            await abandon(core, installedOn: Array(hosts.indices), within: timeout)
            throw .configPush(ConfigPushError(mesh: name, hostCount: hosts.count, failures: []))
        }
    }

    /// HM-2: a failed attach removes its config from every host that may have taken it (the
    /// session ends there; each host gets up to `within` to confirm — a slow host's late
    /// answer to the push arrives meanwhile and is dropped, HM-3), then closes every channel.
    /// A host that does not confirm still learns the session is over when its channel closes.
    private static func abandon(_ core: HostMeshCore, installedOn ranks: [Int], within: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            for rank in ranks {
                guard let channel = core.channel(rank), !channel.isClosed else { continue }
                group.addTask {
                    _ = try? await channel.request(.endSession, timeout: max(within, .milliseconds(100)))
                }
            }
        }
        await core.shutdownChannels()
    }

    /// Pushes a new config snapshot to every host of the mesh, replacing this client's.
    /// - Throws: `HostMeshError.configPush` listing each host that did not install it.
    public func pushConfig(_ config: ConfigSnapshot, timeout: Duration = .seconds(10)) async throws(HostMeshError) {
        guard !core.isShutDown else { throw .shutDown(mesh: name) }
        let clock = core.configuration.clock
        let hosts = self.hosts
        core.config = config
        let book = Locked(AttachBookkeeping(mesh: name, hosts: hosts, digest: config.digest, now: clock.now(), timeout: timeout))
        await withTaskGroup(of: Void.self) { group in
            for rank in hosts.indices {
                let channel = core.channel(coreRanks.lowerBound + rank)
                group.addTask {
                    guard let channel else {
                        _ = book.withLock { $0.failed(rank: rank, .connectionLost("no connection")) }
                        return
                    }
                    book.withLock { $0.pushing(rank: rank) }
                    await HostMesh.push(config, over: channel, rank: rank, timeout: timeout, total: timeout, book: book,
                                        core: self.core)
                }
            }
        }
        let result = book.withLock { b in
            _ = b.poll(now: b.deadline)
            return b.result
        }
        if case .failure(let e)? = result { throw .configPush(e) }
    }

    private static func push(_ config: ConfigSnapshot, over channel: ControlChannel, rank: Int, timeout: Duration,
                             total: Duration, book: Locked<AttachBookkeeping>, core: HostMeshCore) async {
        core.metrics.configPushes.add()
        do {
            switch try await channel.request(.installConfig(config), timeout: timeout) {
            case .configInstalled(let digest):
                _ = book.withLock { $0.acknowledged(rank: rank, digest: digest) }
            case .configRejected(let reason):
                _ = book.withLock { $0.failed(rank: rank, .rejectedConfig(reason)) }
            case let other:
                _ = book.withLock { $0.failed(rank: rank, .rejectedConfig("unexpected reply kind \(other.kind)")) }
            }
        } catch {
            let cause: ConfigPushFailure
            switch error {
            case .timedOut: cause = .timedOut(after: total)
            case .transport(let e): cause = ConfigPushFailure(e)
            case .peerLost(let why): cause = .connectionLost("host lost: \(why)")
            case .peerRestarted: cause = .connectionLost("the agent restarted")
            case .closed(let why): cause = .connectionLost(why)
            case .refused(let why): cause = .connectionLost("refused by the link: \(why)")
            }
            _ = book.withLock { $0.failed(rank: rank, cause) }
        }
    }

    /// A view of the hosts at `ranks` (renumbered from 0), sharing this mesh's channels (and
    /// keeping them open while it exists). Its `shutdown()` stops only the proc meshes spawned
    /// through it; the attached mesh's `shutdown()` ends everything.
    public func slice(_ ranks: Range<Int>) throws(HostMeshRefError) -> HostMesh {
        _ = try ref.slice(ranks)
        let lower = coreRanks.lowerBound + ranks.lowerBound
        return HostMesh(owner: owner, coreRanks: lower..<(lower + ranks.count), isRoot: false)
    }

    /// Stops the proc meshes spawned through this mesh (the attached mesh: every proc mesh of
    /// the attach; a slice: those spawned through it), each within its stop idle timeout;
    /// detached proc meshes keep running. The attached mesh then ends the session on every
    /// host (its config is removed) and closes the channels. Idempotent.
    public func shutdown() async {
        guard !core.isShutDown else { return }
        let handle = self.handle
        let root = isRoot
        let mine = core.procMeshes(where: { !$0.options.detached && (root || $0.spawnedBy == handle) }, owner: owner)
        await withTaskGroup(of: Void.self) { group in
            for m in mine {
                group.addTask {
                    do { try await m.stop() } catch {
                        self.core.logger.warning("proc mesh did not stop cleanly", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
        guard root else { return }
        await withTaskGroup(of: Void.self) { group in
            for rank in core.hosts.indices where core.isUp(rank) {
                guard let channel = core.channel(rank) else { continue }
                let timeout = core.configuration.requestTimeout
                group.addTask { _ = try? await channel.request(.endSession, timeout: timeout) }
            }
        }
        await core.shutdownChannels()
    }
}

/// Shuts its host mesh down when it is released: the scoped owner of a mesh.
///
/// `deinit` cannot wait, so it starts `shutdown()` in a task (procs are stopped with SIGTERM
/// and the grace period, then channels close). Call `shutdown()` to wait for it.
public final class HostMeshShutdownGuard: Sendable {
    public let mesh: HostMesh

    public init(_ mesh: HostMesh) { self.mesh = mesh }

    /// Shuts the mesh down and waits for it.
    public func shutdown() async { await mesh.shutdown() }

    deinit {
        let mesh = self.mesh
        Task { await mesh.shutdown() }
    }
}

extension HostMeshRef {
    /// Builds a reference from parts already validated.
    init(unchecked name: String, hosts: [Address]) {
        self.name = name
        self.hosts = hosts
    }
}
