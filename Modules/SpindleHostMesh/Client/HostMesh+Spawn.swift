import Logging
import SpindleKernel

extension HostMesh {
    /// Spawns `perHost` procs on every host and waits until all are ready.
    ///
    /// Rank `r = hostRank × perHost + i` runs on host `hostRank`; `bootstrap(r)` says how to
    /// start it. The wait's idle timeout (`spawnIdleTimeout`) is re-armed by every state
    /// update. On any failure the procs already started are stopped before the error returns.
    /// - Throws: `ProcMeshError.bootstrapFailed` naming the rank whose function threw, or
    ///   `.bootstrapTooLarge` (nothing is started then); `.spawnRefused` when an agent refuses
    ///   (program not allowed, a limit); `.procFailed` with the rank that ended before it was
    ///   ready and every rank's state; `.hostLost` when a host was lost meanwhile;
    ///   `.spawnTimedOut` with every rank's last state (`timeout` for ranks never heard
    ///   from); `.hostFailed`.
    public func spawnProcs(name procName: String, perHost: Int,
                           bootstrap: (Int) throws -> BootstrapCommand) async throws(ProcMeshError) -> ProcMesh {
        try await spawnProcs(name: procName, perHost: perHost, options: SpawnOptions(), bootstrap: bootstrap)
    }

    /// Spawns a detached proc mesh (`detached: true`: owned by the cluster, it outlives this
    /// client; see `SpawnOptions.detached`) or an attached one.
    public func spawnProcs(name procName: String, perHost: Int, detached: Bool,
                           bootstrap: (Int) throws -> BootstrapCommand) async throws(ProcMeshError) -> ProcMesh {
        try await spawnProcs(name: procName, perHost: perHost, options: SpawnOptions(detached: detached), bootstrap: bootstrap)
    }

    /// Spawns `perHost` procs on every host with `options` (restart policy, detached,
    /// readiness) and waits until all are ready (`Readiness.announced`) or started
    /// (`Readiness.started`). See `spawnProcs(name:perHost:bootstrap:)`.
    public func spawnProcs(name procName: String, perHost: Int, options: SpawnOptions,
                           bootstrap: (Int) throws -> BootstrapCommand) async throws(ProcMeshError) -> ProcMesh {
        if let problem = HostMeshRef.nameProblem(procName) { throw .invalidName(procName, problem: problem) }
        guard perHost >= 0 else { throw .invalidName(procName, problem: "perHost \(perHost) is negative") }
        guard !core.isShutDown else { throw .shutDown(mesh: procName) }
        let hostCount = coreRanks.count
        let (worldSize, overflow) = hostCount.multipliedReportingOverflow(by: perHost)
        guard !overflow else { throw .invalidName(procName, problem: "perHost \(perHost) × \(hostCount) hosts overflows") }
        let limit = core.configuration.maxBootstrapBytes
        var requests: [SpawnRequest] = []
        for hostRank in 0..<hostCount {
            var procs: [ProcSpec] = []
            procs.reserveCapacity(perHost)
            for i in 0..<perHost {
                let rank = hostRank * perHost + i
                let command: BootstrapCommand
                do {
                    command = try bootstrap(rank)
                } catch {
                    throw .bootstrapFailed(mesh: procName, rank: rank, "\(error)")
                }
                let bytes = command.byteCount
                guard bytes <= limit else {
                    throw .bootstrapTooLarge(mesh: procName, rank: rank, bytes: bytes, limit: limit)
                }
                procs.append(ProcSpec(rank: rank, command: command))
            }
            requests.append(SpawnRequest(mesh: procName, procs: procs, worldSize: worldSize, hostRank: hostRank,
                                         clientAddress: core.configuration.clientAddress, restart: options.restart,
                                         detached: options.detached, readiness: options.readiness))
        }
        let mesh = ProcMesh(name: procName, perHost: perHost, options: options, core: core, coreRanks: coreRanks,
                            owner: owner, spawnedBy: handle)
        guard core.register(mesh, record: mesh.record) else {
            throw .invalidName(procName, problem: "a live proc mesh of this name exists on host mesh \"\(name)\"")
        }
        let clock = core.configuration.clock
        let idle = core.configuration.spawnIdleTimeout
        let goal: RankWait.Goal = options.readiness == .started ? .allStarted : .allReady
        let driver = RankWaitDriver(RankWait(goal: goal, ranks: worldSize, idle: idle, now: clock.now()), clock: clock)
        mesh.setDriver(driver)

        // Ask every agent at once; collect refusals and failures by host rank.
        let failures = await withTaskGroup(of: (Int, ProcMeshError?).self) { group in
            for (hostRank, request) in requests.enumerated() {
                let h = coreRanks.lowerBound + hostRank
                group.addTask {
                    let host = self.core.hosts[h]
                    switch await mesh.ask(h, .spawn(request), timeout: idle) {
                    case .success(.spawnAccepted):
                        return (hostRank, nil)
                    case .success(.spawnRefused(_, let rank, let refusal)):
                        return (hostRank, .spawnRefused(mesh: procName, host: host, rank: rank, refusal))
                    case .success(let other):
                        return (hostRank, .hostFailed(mesh: procName, host: host, .closed("unexpected reply kind \(other.kind)")))
                    case .failure(let f):
                        return (hostRank, .hostFailed(mesh: procName, host: host, f))
                    }
                }
            }
            var found: [(Int, ProcMeshError)] = []
            for await (r, e) in group { if let e { found.append((r, e)) } }
            return found.sorted { $0.0 < $1.0 }
        }
        if let first = failures.first?.1 {
            // A refusing or failed host started none of its procs (agents spawn all of a
            // request or nothing): those ranks are final, so the cleanup does not wait on them.
            for (hostRank, error) in failures {
                mesh.markNotStarted(coreRank: coreRanks.lowerBound + hostRank, reason: error.description)
            }
            mesh.setDriver(nil)
            let failed = Set(failures.map { coreRanks.lowerBound + $0.0 })
            await abandon(mesh, hosts: coreRanks.filter { !failed.contains($0) })
            throw first
        }
        let outcome = await driver.outcome()
        mesh.setDriver(nil)
        switch outcome {
        case .reached:
            core.logger.info("proc mesh ready", metadata: ["mesh": "\(procName)", "procs": "\(worldSize)"])
            return mesh
        case .rankFailed(let rank, let states):
            await abandon(mesh)
            if case .hostLost(let reason) = states[rank] {
                throw .hostLost(mesh: procName, host: mesh.host(ofRank: rank), reason: reason)
            }
            throw .procFailed(mesh: procName, rank: rank, states: states)
        case .timedOut(let idle, let states):
            await abandon(mesh)
            throw .spawnTimedOut(mesh: procName, idle: idle, states: states)
        }
    }

    /// Stops what a failed spawn started (on `hosts`, those that accepted it; nil: every
    /// host), so no partly started mesh is left behind.
    private func abandon(_ mesh: ProcMesh, hosts: [Int]? = nil) async {
        do {
            try await mesh.stop(hosts: hosts ?? Array(coreRanks))
        } catch {
            core.logger.warning("procs of a failed spawn did not all stop", metadata: ["error": "\(error)"])
        }
        core.unregister(mesh)
    }
}

extension HostMeshRef {
    /// Why `name` cannot name a mesh, or nil when it can.
    static func nameProblem(_ name: String) -> String? {
        do {
            try checkName(name, text: name)
            return nil
        } catch {
            return error.problem.description
        }
    }
}
