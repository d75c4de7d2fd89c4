import Logging
import SpindleEventLoop
import SpindleKernel
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The agent on one host: installs the config clients push, starts and watches procs, and
/// reports every change of their state to the client that spawned them.
///
/// ```
///  client ──installConfig / spawn / stop / queryStates──▶ HostAgent ──uv_spawn──▶ proc
///         ◀──────────── replies, procState pushes ─────── │        ◀─procHello/procReady─┘
/// ```
/// Run it in-process (`HostAgent(on:transport:configuration:)` then `start()`) or as the
/// `spindle host-agent` daemon. Procs get `PR_SET_PDEATHSIG` = SIGKILL, so they die with the
/// agent even when the agent is killed with SIGKILL; `shutdown()` stops them gracefully first.
public final class HostAgent: Sendable {
    struct ProcKey: Hashable, Sendable, Comparable {
        var mesh: String
        var rank: Int

        static func < (a: ProcKey, b: ProcKey) -> Bool { (a.mesh, a.rank) < (b.mesh, b.rank) }
    }

    struct ProcEntry: Sendable {
        var lifecycle: ProcLifecycle
        /// The client link that spawned the proc (state pushes go there).
        var owner: ObjectIdentifier?
        var child: ChildProcess?
        var exit: ExitStatus?
        var stderrOpen = false
        var stderr: TailBuffer
        var timers: [LoopTimer] = []

        func status(_ key: ProcKey) -> ProcStatus {
            ProcStatus(mesh: key.mesh, rank: key.rank, state: lifecycle.state, pid: lifecycle.pid)
        }
    }

    struct State: Sendable {
        var config: ConfigSnapshot?
        var procs: [ProcKey: ProcEntry] = [:]
        var links: [ObjectIdentifier: ControlLink] = [:]
        var listener: (any TransportListener)?
        var address: Address?
        var started = false
        var shuttingDown = false
        var idleWaiters: [CheckedContinuation<Void, Never>] = []

        var allProcsFinal: Bool { procs.values.allSatisfy { $0.lifecycle.state.isTerminal } }
    }

    let loop: EventLoop
    let transport: any Transport
    let configuration: Configuration
    let allowList: ProgramAllowList
    let state = Mutex(State())
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
    }

    /// Listens on `configuration.listenAddress`.
    /// - Returns: the bound address (port 0 resolved).
    /// - Throws: `HostAgentError.insecureListen` for a non-loopback address without an
    ///   authenticating transport; `.cannotListen` when the transport fails.
    @discardableResult
    public func start() async throws(HostAgentError) -> Address {
        let address = configuration.listenAddress
        guard address.isLoopback || configuration.transportAuthenticates else {
            logger.error("refused to listen: non-loopback address without a cluster key", metadata: ["address": "\(address)"])
            throw .insecureListen(address)
        }
        let ok = state.withLock { s -> Bool in
            guard !s.started, !s.shuttingDown else { return false }
            s.started = true
            return true
        }
        guard ok else { throw .notStartable("already started or shut down") }
        for p in allowList.unresolved {
            logger.warning("allow-list entry names no executable file", metadata: ["program": "\(p)"])
        }
        let listener: any TransportListener
        do {
            listener = try await transport.listen(on: address) { [weak self] connection in
                self?.accept(connection)
            }
        } catch {
            throw .cannotListen(error)
        }
        state.withLock {
            $0.listener = listener
            $0.address = listener.address
        }
        logger.info("host agent listening", metadata: [
            "address": "\(listener.address)",
            "allowed": "\(allowList.realPaths.sorted().joined(separator: ","))",
        ])
        return listener.address
    }

    /// The bound address, once started.
    public var address: Address? { state.withLock { $0.address } }

    /// The installed config snapshot, if a client pushed one.
    public var installedConfig: ConfigSnapshot? { state.withLock { $0.config } }

    /// Every proc the agent knows, ordered by mesh name and rank.
    public func procs() -> [ProcStatus] {
        state.withLock { s in s.procs.keys.sorted().map { s.procs[$0]!.status($0) } }
    }

    /// Stops every proc (SIGTERM, then SIGKILL after the grace), waits until all have
    /// exited, and closes the listener and every connection. Idempotent.
    public func shutdown() async {
        let (listener, keys) = state.withLock { s -> ((any TransportListener)?, [ProcKey]) in
            s.shuttingDown = true
            defer { s.listener = nil }
            return (s.listener, Array(s.procs.keys))
        }
        listener?.close()
        for key in keys { stopProc(key) }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                if s.allProcsFinal { return true }
                s.idleWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
        let links = state.withLock { s -> [ControlLink] in
            defer { s.links.removeAll() }
            for k in s.procs.keys {
                for t in s.procs[k]!.timers { t.cancel() }
                s.procs[k]!.timers.removeAll()
            }
            return Array(s.links.values)
        }
        for l in links { l.close() }
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

    private func accept(_ connection: any TransportConnection) {
        let link = ControlLink(
            connection: connection, logger: logger,
            onMessage: { [weak self] link, message, correlation in
                self?.handle(message, correlation: correlation, from: link)
            },
            onClose: { [weak self] link, reason in
                self?.linkClosed(link, reason: reason)
            })
        let rejected = state.withLock { s -> Bool in
            if s.shuttingDown { return true }
            s.links[ObjectIdentifier(link)] = link
            return false
        }
        if rejected { link.close() }
    }

    private func linkClosed(_ link: ControlLink, reason: CloseReason) {
        let id = ObjectIdentifier(link)
        let orphaned = state.withLock { s -> [ProcKey] in
            s.links.removeValue(forKey: id)
            let owned = s.procs.filter { $0.value.owner == id }.map(\.key)
            for k in owned { s.procs[k]!.owner = nil }
            return owned
        }
        if case .authenticationFailed(let why) = reason {
            logger.warning("refused a peer that failed authentication", metadata: ["peer": "\(link.remoteAddress)", "reason": "\(why)"])
        }
        guard configuration.stopProcsWhenClientLeaves, !orphaned.isEmpty else { return }
        logger.info("client left; stopping its procs", metadata: ["peer": "\(link.remoteAddress)", "procs": "\(orphaned.count)"])
        for k in orphaned { stopProc(k) }
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
