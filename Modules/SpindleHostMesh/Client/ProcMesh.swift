import Logging
import SpindleKernel
import Synchronization

/// Procs spawned across a host mesh: `perHost` on each host, rank = hostRank × perHost + i.
///
/// Agents push every state change; `lastKnown` holds the latest, `states()` asks the agents,
/// `stop()` stops every proc and waits until each is final.
public final class ProcMesh: Sendable {
    private struct State {
        var last: [ProcStatus?]
        var driver: RankWaitDriver?
    }

    /// The proc mesh's name (`SPINDLE_MESH`).
    public let name: String
    /// Procs per host.
    public let perHost: Int
    let core: HostMeshCore
    let coreRanks: Range<Int>
    private let state: Mutex<State>

    init(name: String, perHost: Int, core: HostMeshCore, coreRanks: Range<Int>) {
        self.name = name
        self.perHost = perHost
        self.core = core
        self.coreRanks = coreRanks
        state = Mutex(State(last: Array(repeating: nil, count: perHost * coreRanks.count)))
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

    /// Asks every agent for its procs' states; waits at most the state idle timeout without
    /// progress. Ranks never reported come back as `timeout`; ranks of an unreachable agent
    /// as `failed`.
    public func states() async -> [ProcState] {
        let driver = RankWaitDriver(
            RankWait(goal: .allReported, ranks: count, idle: core.configuration.stateIdleTimeout, now: core.configuration.clock.now()),
            clock: core.configuration.clock)
        let idle = core.configuration.stateIdleTimeout
        let queries = Task {
            await withTaskGroup(of: Void.self) { group in
                for h in coreRanks {
                    group.addTask {
                        let result = await self.ask(h, .queryStates(mesh: self.name), timeout: idle)
                        switch result {
                        case .success(.states(_, let statuses)):
                            for st in statuses where self.owns(st.rank, coreRank: h) {
                                self.remember(st)
                                driver.record(rank: st.rank, state: st.state)
                            }
                        case .success(let other):
                            self.failRanks(of: h, driver: driver, reason: "unexpected reply kind \(other.kind)")
                        case .failure(let f):
                            self.failRanks(of: h, driver: driver, reason: "agent \(self.core.hosts[h]): \(f)")
                        }
                    }
                }
            }
        }
        let outcome = await driver.outcome()
        queries.cancel()
        switch outcome {
        case .reached(let s), .rankFailed(_, let s), .timedOut(_, let s): return s
        }
    }

    /// Stops every proc (SIGTERM, grace, SIGKILL on each agent) and waits until every rank is
    /// final, with the stop idle timeout re-armed by each update.
    /// - Throws: `ProcMeshError.stopTimedOut` naming the ranks that did not stop.
    public func stop() async throws(ProcMeshError) {
        let idle = core.configuration.stopIdleTimeout
        let initial = state.withLock { $0.last.map { $0?.state } }
        let driver = RankWaitDriver(
            RankWait(goal: .allFinal, ranks: count, idle: idle, now: core.configuration.clock.now(), initial: initial),
            clock: core.configuration.clock)
        state.withLock { $0.driver = driver }
        defer { state.withLock { if $0.driver === driver { $0.driver = nil } } }
        await withTaskGroup(of: Void.self) { group in
            for h in coreRanks {
                group.addTask {
                    if case .failure(let f) = await self.ask(h, .stop(mesh: self.name), timeout: idle) {
                        self.failRanks(of: h, driver: driver, reason: "agent \(self.core.hosts[h]): \(f)")
                    }
                }
            }
        }
        let outcome = await driver.outcome()
        switch outcome {
        case .reached, .rankFailed:
            core.unregister(self)
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

    /// Installs the driver a spawn waits on.
    func setDriver(_ driver: RankWaitDriver?) { state.withLock { $0.driver = driver } }

    /// A pushed state update from the agent at core rank `hostRank`.
    func update(_ status: ProcStatus, hostRank: Int) {
        guard coreRanks.contains(hostRank), owns(status.rank, coreRank: hostRank) else {
            core.logger.warning("state update for a rank this host does not run",
                                metadata: ["mesh": "\(name)", "rank": "\(status.rank)", "host": "\(core.hosts[hostRank])"])
            return
        }
        let driver = state.withLock { s -> RankWaitDriver? in
            s.last[status.rank] = merged(s.last[status.rank], status)
            return s.driver
        }
        driver?.record(rank: status.rank, state: status.state)
    }

    /// The connection to a host closed: its procs are out of reach.
    func hostLost(coreRank h: Int, reason: CloseReason) {
        guard coreRanks.contains(h) else { return }
        let driver = state.withLock { $0.driver }
        let why = reason == .closedLocally ? "connection to agent closed" : "agent \(core.hosts[h]) lost: \(reason)"
        for r in ranks(ofCoreRank: h) {
            let st = state.withLock { s -> ProcState? in
                if let old = s.last[r], old.state.isTerminal { return nil }
                let failed = ProcStatus(mesh: name, rank: r, state: .failed(reason: why), pid: s.last[r]?.pid)
                s.last[r] = failed
                return failed.state
            }
            if let st { driver?.record(rank: r, state: st) }
        }
    }

    /// Records that the procs of core rank `h` were never started (their host refused or failed).
    func markNotStarted(coreRank h: Int, reason: String) {
        state.withLock { s in
            for r in ranks(ofCoreRank: h) where s.last[r] == nil {
                s.last[r] = ProcStatus(mesh: name, rank: r, state: .failed(reason: reason))
            }
        }
    }

    private func remember(_ status: ProcStatus) {
        state.withLock { $0.last[status.rank] = merged($0.last[status.rank], status) }
    }

    private func merged(_ old: ProcStatus?, _ new: ProcStatus) -> ProcStatus {
        guard let old else { return new }
        if old.state.isTerminal, !new.state.isTerminal { return old }
        var n = new
        if n.pid == nil { n.pid = old.pid }
        return n
    }

    private func failRanks(of h: Int, driver: RankWaitDriver, reason: String) {
        for r in ranks(ofCoreRank: h) {
            let st = state.withLock { s -> ProcState? in
                if let old = s.last[r], old.state.isTerminal { return old.state }
                return nil
            }
            driver.record(rank: r, state: st ?? .failed(reason: reason))
        }
    }

    func ask(_ h: Int, _ message: HostMeshMessage, timeout: Duration) async -> Result<HostMeshMessage, LinkFailure> {
        guard let link = core.link(h) else { return .failure(.transport(.closed(.closedLocally))) }
        do {
            return .success(try await link.request(message, timeout: timeout))
        } catch {
            return .failure(error)
        }
    }
}
