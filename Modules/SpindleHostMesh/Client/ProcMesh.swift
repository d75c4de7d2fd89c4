import Logging
import SpindleKernel
import Synchronization

/// Procs spawned across a host mesh: `perHost` on each host, rank = hostRank × perHost + i.
///
/// Agents push every state change, death and output line; `lastKnown` holds the latest
/// states, `events()` and `logs()` stream them, `states()` asks the agents, `stop()` stops
/// every proc and waits until each is final. A proc mesh keeps its host mesh's channels open
/// while it exists.
public final class ProcMesh: Sendable {
    private struct State {
        var last: [ProcStatus?]
        var driver: RankWaitDriver?
        /// The subscription that holds output until the first `logs()` call takes it.
        var pendingLogs: UInt64?
    }

    /// The proc mesh's name (`SPINDLE_MESH`).
    public let name: String
    /// Procs per host.
    public let perHost: Int
    /// How it was spawned (restart policy, detached, readiness).
    public let options: SpawnOptions
    let core: HostMeshCore
    let coreRanks: Range<Int>
    /// Keeps the host mesh's channels open while this proc mesh exists.
    let owner: HostMeshOwner
    let spawnedBy: UInt64
    private let state: Mutex<State>
    private let eventHub = Broadcast<MeshEvent>()
    private let logHub = Broadcast<ProcLog>()

    init(name: String, perHost: Int, options: SpawnOptions, core: HostMeshCore, coreRanks: Range<Int>,
         owner: HostMeshOwner, spawnedBy: UInt64) {
        self.name = name
        self.perHost = perHost
        self.options = options
        self.core = core
        self.coreRanks = coreRanks
        self.owner = owner
        self.spawnedBy = spawnedBy
        let pending = logHub.subscribe(capacity: core.configuration.logBufferLines)
        state = Mutex(State(last: Array(repeating: nil, count: perHost * coreRanks.count), pendingLogs: pending))
    }

    /// A proc mesh object for a record whose `ProcMesh` was released (to stop it).
    convenience init(record: HostMeshCore.Record, core: HostMeshCore, owner: HostMeshOwner) {
        self.init(name: record.name, perHost: record.perHost, options: record.options, core: core,
                  coreRanks: record.coreRanks, owner: owner, spawnedBy: record.spawnedBy)
    }

    deinit {
        eventHub.finish()
        logHub.finish()
    }

    var record: HostMeshCore.Record {
        HostMeshCore.Record(name: name, perHost: perHost, coreRanks: coreRanks, spawnedBy: spawnedBy, options: options)
    }

    /// The number of procs.
    public var count: Int { perHost * coreRanks.count }

    /// The hosts in host-rank order.
    public var hosts: [Address] { Array(core.hosts[coreRanks]) }

    /// The agent address of the host running `rank`.
    public func host(ofRank rank: Int) -> Address { core.hosts[coreRank(ofRank: rank)] }

    /// Every rank's latest pushed status (`timeout` with no pid for ranks never heard from).
    public var lastKnown: [ProcStatus] {
        state.withLock { s in
            s.last.enumerated().map { i, st in st ?? ProcStatus(mesh: name, rank: i, state: .timeout) }
        }
    }

    /// Supervision events of this proc mesh: each rank's state changes, deaths (with exit code
    /// or signal, stderr tail, and whether it restarts), and its hosts lost and back.
    /// Subscribes now; each subscriber has its own buffer (`eventBufferSize`) and gets
    /// `.missed(n)` for what it lost by falling behind. Ends when `stop()` has stopped every
    /// rank, or when the proc mesh is released.
    public func events() -> BufferedSequence<MeshEvent> {
        BufferedSequence(eventHub, capacity: core.configuration.eventBufferSize) { item in
            switch item {
            case .element(let e): return e
            case .missed(let n): return .missed(n)
            }
        }
    }

    /// The procs' output, line by line, in order per rank (stdout and stderr of one rank are
    /// two streams: their relative order is not kept). The first call also gets what was
    /// written since the spawn (up to `logBufferLines`); later calls start now. A subscriber
    /// that falls behind gets `.dropped(n)` where it lost lines (so do lines an agent dropped
    /// because this client was not keeping up). Ends when `stop()` has stopped every rank (all
    /// output has arrived by then), or when the proc mesh is released.
    public func logs() -> BufferedSequence<ProcLog> {
        let pending = state.withLock { s -> UInt64? in
            defer { s.pendingLogs = nil }
            return s.pendingLogs
        }
        let element: @Sendable (BoundedBuffer<ProcLog>.Item) -> ProcLog = { item in
            switch item {
            case .element(let l): return l
            case .missed(let n): return .dropped(n)
            }
        }
        if let pending { return BufferedSequence(logHub, subscription: pending, element: element) }
        return BufferedSequence(logHub, capacity: core.configuration.logBufferLines, element: element)
    }

    /// Asks every agent for its procs' states; waits at most the state idle timeout without
    /// progress. Ranks never reported come back as `timeout`; ranks of a lost agent as
    /// `hostLost`, of an agent that could not answer as `failed`.
    public func states() async -> [ProcState] {
        let idle = core.configuration.stateIdleTimeout
        let clock = core.configuration.clock
        let driver = state.withLock { s in
            // A final state the agent may have forgotten (pruned) stays what it was.
            let known = s.last.map { st -> ProcState? in st.flatMap { $0.state.isTerminal ? $0.state : nil } }
            return RankWaitDriver(RankWait(goal: .allReported, ranks: count, idle: idle, now: clock.now(),
                                           initial: known, generations: s.last.map { $0?.restarts ?? 0 }),
                                  clock: clock)
        }
        let queries = Task {
            await withTaskGroup(of: Void.self) { group in
                for h in coreRanks {
                    group.addTask { await self.query(h, driver: driver, timeout: idle) }
                }
            }
        }
        let outcome = await driver.outcome()
        queries.cancel()
        switch outcome {
        case .reached(let s), .rankFailed(_, let s), .timedOut(_, let s): return s
        }
    }

    private func query(_ h: Int, driver: RankWaitDriver?, timeout: Duration) async {
        let request: HostMeshMessage = options.detached ? .listDetached : .queryStates(mesh: name)
        switch await ask(h, request, timeout: timeout) {
        case .success(.states(_, let statuses)), .success(.detached(let statuses)):
            for st in statuses where st.mesh == name && owns(st.rank, coreRank: h) {
                let merged = remember(st)
                driver?.record(rank: st.rank, state: merged.state, restarts: merged.restarts)
            }
        case .success(let other):
            if let driver { failRanks(of: h, driver: driver, failure: .closed("unexpected reply kind \(other.kind)")) }
        case .failure(let f):
            if let driver { failRanks(of: h, driver: driver, failure: f) }
        }
    }

    /// Stops every proc (SIGTERM to its process group, grace, SIGKILL, on each agent) and
    /// waits until every rank is final, with the stop idle timeout re-armed by each update.
    /// A rank that is already final is reported at once; the ranks of a lost host are
    /// `hostLost` (not waited for).
    /// - Throws: `ProcMeshError.stopTimedOut` naming the ranks that did not stop.
    public func stop() async throws(ProcMeshError) {
        try await stop(hosts: coreRanks)
    }

    /// Stops the procs on the hosts at `hosts` (core ranks); the ranks of the others must be
    /// final already. A failed spawn stops only what it started: on the hosts that accepted
    /// it (for a detached mesh, asking another host to stop the name would stop the cluster's
    /// live mesh of that name, which is why that host refused).
    func stop<S: Sequence<Int> & Sendable>(hosts: S) async throws(ProcMeshError) {
        let idle = core.configuration.stopIdleTimeout
        let clock = core.configuration.clock
        // The initial states and the driver are taken under one lock: a final state pushed
        // just as the stop begins is either in `initial` or recorded by the driver.
        let driver = state.withLock { s in
            let d = RankWaitDriver(
                RankWait(goal: .allFinal, ranks: count, idle: idle, now: clock.now(),
                         initial: s.last.map { $0?.state }, generations: s.last.map { $0?.restarts ?? 0 }),
                clock: clock)
            s.driver = d
            return d
        }
        defer { state.withLock { if $0.driver === driver { $0.driver = nil } } }
        await withTaskGroup(of: Void.self) { group in
            for h in hosts {
                group.addTask {
                    let request: HostMeshMessage = self.options.detached ? .stopDetached(mesh: self.name) : .stop(mesh: self.name)
                    switch await self.ask(h, request, timeout: idle) {
                    case .success(.stopAccepted(_, let statuses)), .success(.detachedStopped(_, let statuses)):
                        for st in statuses where self.owns(st.rank, coreRank: h) {
                            let merged = self.remember(st)
                            driver.record(rank: st.rank, state: merged.state, restarts: merged.restarts)
                        }
                    case .success(let other):
                        self.failRanks(of: h, driver: driver, failure: .closed("unexpected reply kind \(other.kind)"))
                    case .failure(let f):
                        self.failRanks(of: h, driver: driver, failure: f)
                    }
                }
            }
        }
        let outcome = await driver.outcome()
        switch outcome {
        case .reached, .rankFailed:
            core.unregister(self)
            // Every rank is final: agents push a proc's output before its final state, so
            // nothing more is coming. The streams end once their subscribers have read them.
            eventHub.finish()
            logHub.finish()
        case .timedOut(let idle, let states):
            let notStopped = states.indices.filter { !states[$0].isTerminal }
            throw .stopTimedOut(mesh: name, idle: idle, notStopped: notStopped, states: states)
        }
    }

    // MARK: - Internal

    func coreRank(ofRank rank: Int) -> Int { coreRanks.lowerBound + rank / max(perHost, 1) }

    func ranks(ofCoreRank h: Int) -> Range<Int> {
        let hostRank = h - coreRanks.lowerBound
        return (hostRank * perHost)..<((hostRank + 1) * perHost)
    }

    private func owns(_ rank: Int, coreRank h: Int) -> Bool { ranks(ofCoreRank: h).contains(rank) }

    /// Installs the driver a spawn waits on; the states pushed so far are recorded in it.
    func setDriver(_ driver: RankWaitDriver?) {
        let known = state.withLock { s -> [ProcStatus] in
            s.driver = driver
            return s.last.compactMap { $0 }
        }
        guard let driver else { return }
        for st in known { driver.record(rank: st.rank, state: st.state, restarts: st.restarts) }
    }

    /// A pushed state update from the agent at core rank `hostRank`.
    func update(_ status: ProcStatus, hostRank: Int) {
        guard coreRanks.contains(hostRank), owns(status.rank, coreRank: hostRank) else {
            core.logger.warning("state update for a rank this host does not run",
                                metadata: ["mesh": "\(name)", "rank": "\(status.rank)", "host": "\(core.hosts[hostRank])"])
            return
        }
        let (driver, merged) = state.withLock { s -> (RankWaitDriver?, ProcStatus) in
            let m = Self.merged(s.last[status.rank], status)
            s.last[status.rank] = m
            return (s.driver, m)
        }
        eventHub.publish(.stateChanged(status))
        driver?.record(rank: status.rank, state: merged.state, restarts: merged.restarts)
    }

    /// A proc died (pushed by its agent).
    func died(_ death: ProcDeath, hostRank: Int) {
        guard coreRanks.contains(hostRank), owns(death.rank, coreRank: hostRank) else { return }
        eventHub.publish(.died(death))
    }

    /// Output of one proc (pushed by its agent).
    func output(_ output: ProcOutput, hostRank: Int) {
        guard coreRanks.contains(hostRank) else { return }
        logHub.publishMissed(output.dropped)
        for line in output.lines where owns(line.rank, coreRank: hostRank) {
            logHub.publish(.line(line))
        }
    }

    /// The host at core rank `h` was lost: its live ranks are `hostLost`.
    /// - Returns: the statuses that changed.
    @discardableResult
    func hostLost(coreRank h: Int, reason: String) -> [ProcStatus] {
        guard coreRanks.contains(h) else { return [] }
        var changed: [ProcStatus] = []
        let driver = state.withLock { s -> RankWaitDriver? in
            for r in ranks(ofCoreRank: h) {
                if let old = s.last[r], old.state.isTerminal { continue }
                let lost = ProcStatus(mesh: name, rank: r, state: .hostLost(reason: reason), pid: s.last[r]?.pid,
                                      restarts: s.last[r]?.restarts ?? 0)
                s.last[r] = lost
                changed.append(lost)
            }
            return s.driver
        }
        eventHub.publish(.hostLost(host: core.hosts[h], hostRank: h - coreRanks.lowerBound, reason: reason))
        for st in changed {
            eventHub.publish(.stateChanged(st))
            driver?.record(rank: st.rank, state: st.state, restarts: st.restarts)
        }
        return changed
    }

    /// The host at core rank `h` answers again: report it, and learn what its agent says
    /// about the ranks (it stops the procs of a client it lost; detached ones may run on).
    func hostBack(coreRank h: Int) {
        guard coreRanks.contains(h) else { return }
        eventHub.publish(.hostBack(host: core.hosts[h], hostRank: h - coreRanks.lowerBound))
        let timeout = core.configuration.stateIdleTimeout
        Task { await self.query(h, driver: nil, timeout: timeout) }
    }

    /// Records that the procs of core rank `h` were never started (their host refused or failed).
    func markNotStarted(coreRank h: Int, reason: String) {
        state.withLock { s in
            for r in ranks(ofCoreRank: h) where s.last[r] == nil {
                s.last[r] = ProcStatus(mesh: name, rank: r, state: .failed(reason: reason))
            }
        }
    }

    @discardableResult
    private func remember(_ status: ProcStatus) -> ProcStatus {
        state.withLock { s in
            let m = Self.merged(s.last[status.rank], status)
            s.last[status.rank] = m
            return m
        }
    }

    /// A newer report replaces an older one: a later start always; within one start, a final
    /// state is kept (except `hostLost`, the client's guess, which the agent's word replaces).
    static func merged(_ old: ProcStatus?, _ new: ProcStatus) -> ProcStatus {
        guard let old else { return new }
        if new.restarts < old.restarts { return old }
        if new.restarts == old.restarts, old.state.isTerminal, !new.state.isTerminal {
            if case .hostLost = old.state {} else { return old }
        }
        var n = new
        if n.pid == nil, n.restarts == old.restarts { n.pid = old.pid }
        return n
    }

    private func failRanks(of h: Int, driver: RankWaitDriver, failure: LinkFailure) {
        let host = core.hosts[h]
        let failed: ProcState
        switch failure {
        case .peerLost, .peerRestarted: failed = .hostLost(reason: "agent \(host): \(failure)")
        default: failed = .failed(reason: "agent \(host): \(failure)")
        }
        for r in ranks(ofCoreRank: h) {
            let st = state.withLock { s -> ProcStatus in
                if let old = s.last[r], old.state.isTerminal { return old }
                return ProcStatus(mesh: name, rank: r, state: failed, pid: s.last[r]?.pid, restarts: s.last[r]?.restarts ?? 0)
            }
            driver.record(rank: r, state: st.state, restarts: st.restarts)
        }
    }

    func ask(_ h: Int, _ message: HostMeshMessage, timeout: Duration) async -> Result<HostMeshMessage, LinkFailure> {
        guard let channel = core.channel(h) else { return .failure(.closed("no channel to \(core.hosts[h])")) }
        do {
            return .success(try await channel.request(message, timeout: timeout))
        } catch {
            return .failure(error)
        }
    }
}
