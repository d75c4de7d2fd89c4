import Logging
import SpindleKernel

extension HostMesh {
    /// Spawns `perHost` procs on every host and waits until all are ready.
    ///
    /// Rank `r = hostRank × perHost + i` runs on host `hostRank`; `bootstrap(r)` says how to
    /// start it. The wait's idle timeout (`spawnIdleTimeout`) is re-armed by every state
    /// update. On any failure the procs already started are stopped before the error returns.
    /// - Throws: `ProcMeshError.bootstrapFailed` naming the rank whose function threw (nothing
    ///   is started then); `.spawnRefused` when an agent refuses a program; `.procFailed` with
    ///   the rank that ended before it was ready and every rank's state; `.spawnTimedOut` with
    ///   every rank's last state (`timeout` for ranks never heard from); `.hostFailed`.
    public func spawnProcs(name procName: String, perHost: Int,
                           bootstrap: (Int) throws -> BootstrapCommand) async throws(ProcMeshError) -> ProcMesh {
        if let problem = HostMeshRef.nameProblem(procName) { throw .invalidName(procName, problem: problem) }
        guard perHost >= 0 else { throw .invalidName(procName, problem: "perHost \(perHost) is negative") }
        guard !core.isShutDown else { throw .shutDown(mesh: procName) }
        let hostCount = coreRanks.count
        let worldSize = hostCount * perHost
        var requests: [SpawnRequest] = []
        for hostRank in 0..<hostCount {
            var procs: [ProcSpec] = []
            for i in 0..<perHost {
                let rank = hostRank * perHost + i
                do {
                    procs.append(ProcSpec(rank: rank, command: try bootstrap(rank)))
                } catch {
                    throw .bootstrapFailed(mesh: procName, rank: rank, "\(error)")
                }
            }
            requests.append(SpawnRequest(mesh: procName, procs: procs, worldSize: worldSize,
                                         hostRank: hostRank, clientAddress: core.configuration.clientAddress))
        }
        let mesh = ProcMesh(name: procName, perHost: perHost, core: core, coreRanks: coreRanks)
        guard core.register(mesh) else {
            throw .invalidName(procName, problem: "a live proc mesh of this name exists on host mesh \"\(name)\"")
        }
        let clock = core.configuration.clock
        let idle = core.configuration.spawnIdleTimeout
        let driver = RankWaitDriver(RankWait(goal: .allReady, ranks: worldSize, idle: idle, now: clock.now()), clock: clock)
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
                        return (hostRank, .hostFailed(mesh: procName, host: host,
                                                      .transport(.closed(.protocolViolation("unexpected reply kind \(other.kind)")))))
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
            await abandon(mesh)
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
            throw .procFailed(mesh: procName, rank: rank, states: states)
        case .timedOut(let idle, let states):
            await abandon(mesh)
            throw .spawnTimedOut(mesh: procName, idle: idle, states: states)
        }
    }

    /// Stops what a failed spawn started, so no partly started mesh is left behind.
    private func abandon(_ mesh: ProcMesh) async {
        do {
            try await mesh.stop()
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
