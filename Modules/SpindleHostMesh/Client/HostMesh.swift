import Logging
import SpindleKernel
import Synchronization

/// An owned mesh of hosts: one connection to each host's agent, every agent holding the
/// client's config snapshot.
///
/// ```swift
/// let mesh = try await HostMesh.attach(name: "train", hosts: agents, config: snapshot,
///                                      timeout: .seconds(5), transport: tcp)
/// let procs = try await mesh.spawnProcs(name: "workers", perHost: 2) { rank in
///     BootstrapCommand(program: "/usr/local/bin/worker", arguments: ["--rank", "\(rank)"])
/// }
/// try await procs.stop()
/// await mesh.shutdown()
/// ```
/// Attach keeps the host-mesh invariants: success means every host installed the snapshot
/// (HM-1); any failing host fails the attach and every opened connection is closed (HM-2);
/// request failures come back as the call's error and nowhere else (HM-3); the error lists
/// each failing host with its cause (HM-4).
public final class HostMesh: Sendable {
    /// Client-side timeouts and identity.
    public struct Configuration: Sendable {
        /// The longest quiet spell while spawning procs (re-armed by every state update).
        public var spawnIdleTimeout: Duration = .seconds(30)
        /// The longest quiet spell while stopping procs.
        public var stopIdleTimeout: Duration = .seconds(30)
        /// The longest quiet spell while querying proc states.
        public var stateIdleTimeout: Duration = .seconds(10)
        /// Where procs can reach the client (`SPINDLE_CLIENT_ADDR`), if it listens somewhere.
        public var clientAddress: Address? = nil
        public var logger = Logger(label: "spindle.host-mesh")
        public var clock: any SpindleClock = SystemClock()

        public init() {}
    }

    let core: HostMeshCore
    /// The core's hosts this mesh covers (all of them, or a slice).
    let coreRanks: Range<Int>
    let owner: Bool

    init(core: HostMeshCore, coreRanks: Range<Int>, owner: Bool) {
        self.core = core
        self.coreRanks = coreRanks
        self.owner = owner
    }

    deinit {
        // A dropped owner leaves no connection behind; agents then stop its procs.
        if owner { core.closeAll() }
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

    /// Connects to every host and installs `config` on each.
    ///
    /// - Parameters:
    ///   - name: the mesh's name (`A–Z a–z 0–9 . _ -`).
    ///   - hosts: the agents' addresses; zero hosts succeed at once.
    ///   - config: the snapshot every agent must install.
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
        let core = HostMeshCore(name: name, hosts: hosts, transport: transport, configuration: configuration)
        let clock = configuration.clock
        let book = Locked(AttachBookkeeping(mesh: name, hosts: hosts, digest: config.digest, now: clock.now(), timeout: timeout))
        let remaining = { @Sendable in max(book.withLock { $0.deadline } - clock.now(), .zero) }
        await withTaskGroup(of: Void.self) { group in
            for (rank, host) in hosts.enumerated() {
                group.addTask {
                    let connected = await withDeadline(remaining(), late: { r in
                        if case .success(let c) = r { c.close() }
                    }) { () async -> Result<any TransportConnection, TransportError> in
                        do throws(TransportError) { return .success(try await transport.connect(to: host)) } catch { return .failure(error) }
                    }
                    switch connected {
                    case nil:
                        _ = book.withLock { $0.failed(rank: rank, .timedOut(after: timeout)) }
                    case .failure(let e)?:
                        _ = book.withLock { $0.failed(rank: rank, ConfigPushFailure(e)) }
                    case .success(let connection)?:
                        let link = core.adopt(connection, rank: rank)
                        _ = book.withLock { $0.connected(rank: rank) }
                        await push(config, over: link, rank: rank, timeout: remaining(), total: timeout, book: book)
                    }
                }
            }
        }
        let result = book.withLock { b in
            _ = b.poll(now: b.deadline)
            return b.result
        }
        switch result {
        case .success?:
            configuration.logger.info("attached host mesh", metadata: ["mesh": "\(name)", "hosts": "\(hosts.count)"])
            return HostMesh(core: core, coreRanks: 0..<hosts.count, owner: true)
        case .failure(let e)?:
            core.closeAll()
            configuration.logger.warning("attach failed", metadata: ["mesh": "\(name)", "error": "\(e)"])
            throw .configPush(e)
        case nil:
            core.closeAll()
            throw .configPush(ConfigPushError(mesh: name, hostCount: hosts.count, failures: []))
        }
    }

    /// Pushes a new config snapshot to every host of the mesh, replacing the installed one.
    /// - Throws: `HostMeshError.configPush` listing each host that did not install it.
    public func pushConfig(_ config: ConfigSnapshot, timeout: Duration = .seconds(10)) async throws(HostMeshError) {
        guard !core.isShutDown else { throw .shutDown(mesh: name) }
        let clock = core.configuration.clock
        let hosts = self.hosts
        let book = Locked(AttachBookkeeping(mesh: name, hosts: hosts, digest: config.digest, now: clock.now(), timeout: timeout))
        await withTaskGroup(of: Void.self) { group in
            for rank in hosts.indices {
                let link = core.link(coreRanks.lowerBound + rank)
                group.addTask {
                    guard let link else {
                        _ = book.withLock { $0.failed(rank: rank, .connectionLost("no connection")) }
                        return
                    }
                    book.withLock { $0.pushing(rank: rank) }
                    await HostMesh.push(config, over: link, rank: rank, timeout: timeout, total: timeout, book: book)
                }
            }
        }
        let result = book.withLock { b in
            _ = b.poll(now: b.deadline)
            return b.result
        }
        if case .failure(let e)? = result { throw .configPush(e) }
    }

    private static func push(_ config: ConfigSnapshot, over link: ControlLink, rank: Int, timeout: Duration,
                             total: Duration, book: Locked<AttachBookkeeping>) async {
        do {
            switch try await link.request(.installConfig(config), timeout: max(timeout, .milliseconds(1))) {
            case .configInstalled(let digest):
                _ = book.withLock { $0.acknowledged(rank: rank, digest: digest) }
            case .configRejected(let reason):
                _ = book.withLock { $0.failed(rank: rank, .rejectedConfig(reason)) }
            case let other:
                _ = book.withLock { $0.failed(rank: rank, .rejectedConfig("unexpected reply kind \(other.kind)")) }
            }
        } catch {
            switch error {
            case .timedOut: _ = book.withLock { $0.failed(rank: rank, .timedOut(after: total)) }
            case .transport(let e): _ = book.withLock { $0.failed(rank: rank, ConfigPushFailure(e)) }
            }
        }
    }

    /// A view of the hosts at `ranks` (renumbered from 0), sharing this mesh's connections.
    /// A slice does not own them: its `shutdown()` stops only the proc meshes spawned through
    /// it; the parent's `shutdown()` closes everything.
    public func slice(_ ranks: Range<Int>) throws(HostMeshRefError) -> HostMesh {
        _ = try ref.slice(ranks)
        let lower = coreRanks.lowerBound + ranks.lowerBound
        return HostMesh(core: core, coreRanks: lower..<(lower + ranks.count), owner: false)
    }

    /// Stops every proc mesh spawned on this mesh (each within its stop idle timeout), then,
    /// for the owning mesh, closes every connection. Idempotent.
    public func shutdown() async {
        let mine = core.procMeshes.filter { $0.coreRanks.overlaps(coreRanks) || $0.coreRanks.isEmpty }
        await withTaskGroup(of: Void.self) { group in
            for m in mine {
                group.addTask {
                    do { try await m.stop() } catch {
                        self.core.logger.warning("proc mesh did not stop cleanly", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
        if owner { core.closeAll() }
    }
}

/// Shuts its host mesh down when it is released: the scoped owner of a mesh.
///
/// `deinit` cannot wait, so it starts `shutdown()` in a task (procs are stopped with SIGTERM
/// and the grace period, then connections close). Call `shutdown()` to wait for it.
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
