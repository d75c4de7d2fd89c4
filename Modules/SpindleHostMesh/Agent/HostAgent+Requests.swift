import Logging
import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

extension HostAgent {
    /// Handles one request or push from a client session, a proc, or an admin query.
    func handle(_ message: HostMeshMessage, correlation: UInt64, session id: SessionID, channel: ControlChannel) {
        let reply = { (m: HostMeshMessage) in channel.sendOrLog(m, replyTo: correlation) }
        switch message {
        case .installConfig(let snapshot):
            reply(installConfig(snapshot, session: id, channel: channel))
        case .endSession:
            reply(.sessionEnded)
            sessionGone(id, why: "ended by the client")
        case .spawn(let request):
            reply(spawn(request, session: id, channel: channel))
        case .stop(let mesh):
            let keys = state.withLock { s in
                _ = session(id, channel, in: &s)
                return s.procs.keys.filter { $0.owner == .session(id) && $0.mesh == mesh }.sorted()
            }
            for k in keys { stopProc(k) }
            reply(.stopAccepted(mesh: mesh, states: statuses(keys)))
        case .queryStates(let mesh):
            let keys = state.withLock { s in s.procs.keys.filter { $0.owner == .session(id) && $0.mesh == mesh }.sorted() }
            reply(.states(mesh: mesh, statuses(keys)))
        case .agentInfo:
            let info = state.withLock { s in
                let mine = s.procs.keys.filter { $0.owner == .session(id) }.sorted()
                let detached = s.procs.keys.filter { $0.owner == .cluster }.sorted()
                let clients = s.sessions.values.filter { $0.role == .client }.count
                return AgentInfo(address: s.address ?? configuration.listenAddress, pid: getpid(),
                                 configDigest: s.sessions[id]?.config?.digest,
                                 procs: (mine + detached).map { s.procs[$0]!.status($0) },
                                 clientSessions: clients,
                                 detachedMeshes: Array(Set(detached.map(\.mesh))).sorted())
            }
            reply(.info(info))
        case .listDetached:
            let keys = state.withLock { s in s.procs.keys.filter { $0.owner == .cluster }.sorted() }
            reply(.detached(statuses(keys)))
        case .stopDetached(let mesh):
            stopDetached(mesh, channel: channel, correlation: correlation)
        case .readLogs(let mesh, let detached, let follow):
            reply(readLogs(mesh, owner: detached ? .cluster : .session(id), follow: follow, session: id, channel: channel))
        case .procHello(let hello):
            reply(procHello(hello, session: id, channel: channel))
        case .procReady:
            let key = state.withLock { s -> ProcKey? in
                if case .proc(let k)? = s.sessions[id]?.role { return k }
                return nil
            }
            guard let key else {
                logger.warning("procReady from a session that said no valid hello", metadata: ["session": "\(id)"])
                return
            }
            step(key) { e, _ in e.lifecycle.announcedReady() }
        case .fetchConfig:
            let config = state.withLock { s -> ConfigSnapshot in
                guard case .proc(let k)? = s.sessions[id]?.role else { return s.sessions[id]?.config ?? ConfigSnapshot() }
                return currentConfig(of: k, in: s)
            }
            reply(.config(config))
        case .configInstalled, .configRejected, .sessionEnded, .spawnAccepted, .spawnRefused, .procState, .procDied,
             .procOutput, .stopAccepted, .states, .info, .detached, .detachedStopped, .logs, .procWelcome,
             .procRejected, .config, .failure:
            logger.warning("unexpected host-mesh message", metadata: ["session": "\(id)", "kind": "\(message.kind)"])
            if correlation != 0 {
                reply(.failure("a host agent does not accept message kind \(message.kind)"))
            }
        }
    }

    func statuses(_ keys: [ProcKey]) -> [ProcStatus] {
        state.withLock { s in keys.compactMap { k in s.procs[k]?.status(k) } }
    }

    /// The config a proc reads: its client's current one, or (detached, or its client gone)
    /// the one it was spawned with.
    func currentConfig(of key: ProcKey, in s: State) -> ConfigSnapshot {
        if case .session(let owner) = key.owner, let c = s.sessions[owner]?.config { return c }
        return s.procs[key]?.config ?? ConfigSnapshot()
    }

    private func installConfig(_ snapshot: ConfigSnapshot, session id: SessionID, channel: ControlChannel) -> HostMeshMessage {
        if let problem = snapshot.problem ?? configuration.configValidator?(snapshot) {
            logger.warning("rejected config snapshot", metadata: ["session": "\(id)", "reason": "\(problem)"])
            metrics.refused("config_rejected")
            return .configRejected(reason: problem)
        }
        let replaced = state.withLock { s -> Bool in
            var sess = session(id, channel, in: &s)
            let replaced = sess.config != nil && sess.config != snapshot
            sess.config = snapshot
            sess.configOrder = s.nextConfigOrder
            s.nextConfigOrder += 1
            sess.role = .client
            s.sessions[id] = sess
            return replaced
        }
        metrics.configPushes.add()
        logger.info("installed config snapshot", metadata: [
            "session": "\(id)", "digest": "\(String(snapshot.digest, radix: 16))", "keys": "\(snapshot.values.count)",
            "replaced": "\(replaced)",
        ])
        return .configInstalled(digest: snapshot.digest)
    }

    private func procHello(_ hello: ProcHello, session id: SessionID, channel: ControlChannel) -> HostMeshMessage {
        let reply = state.withLock { s -> HostMeshMessage in
            guard let key = s.tokens[hello.token], key.mesh == hello.mesh, key.rank == hello.rank,
                  let e = s.procs[key], e.token == hello.token, !e.lifecycle.state.isTerminal else {
                return .procRejected(reason: "this agent runs no live proc of rank \(hello.rank) in mesh \"\(hello.mesh)\" with that token")
            }
            var sess = session(id, channel, in: &s)
            sess.role = .proc(key)
            s.sessions[id] = sess
            return .procWelcome(currentConfig(of: key, in: s))
        }
        if case .procRejected(let why) = reply {
            metrics.refused("proc_hello")
            logger.warning("refused a proc hello", metadata: ["session": "\(id)", "pid": "\(hello.pid)", "reason": "\(why)"])
        }
        return reply
    }

    /// Validates a spawn request as a whole (all its procs start, or none), then starts them.
    private func spawn(_ request: SpawnRequest, session id: SessionID, channel: ControlChannel) -> HostMeshMessage {
        let refuse = { (rank: Int, refusal: SpawnRefusal) -> HostMeshMessage in
            self.metrics.refused(refusal.metricName)
            self.logger.warning("refused spawn", metadata: [
                "session": "\(id)", "mesh": "\(request.mesh)", "rank": "\(rank)", "reason": "\(refusal)",
            ])
            return .spawnRefused(mesh: request.mesh, rank: rank, refusal: refusal)
        }
        if let problem = HostMeshRef.nameProblem(request.mesh) { return refuse(-1, .invalidRequest("mesh name: \(problem)")) }
        var seen = Set<Int>()
        for p in request.procs {
            guard p.rank >= 0, p.rank < request.worldSize, seen.insert(p.rank).inserted else {
                return refuse(p.rank, .invalidRequest("rank \(p.rank) repeated or outside 0..<\(request.worldSize)"))
            }
        }
        if case .onFailure(let n, let backoff) = request.restart, n < 0 || backoff < .zero {
            return refuse(-1, .invalidRequest("restart policy \(request.restart): negative limit or backoff"))
        }
        let owner: ProcOwner = request.detached ? .cluster : .session(id)
        let admission = state.withLock { s in
            SpawnAdmission.check(request, liveForOwner: s.live { $0.owner == owner }, liveTotal: s.live { _ in true },
                                 limits: configuration.limits)
        }
        if let admission { return refuse(request.procs.first?.rank ?? -1, admission) }
        var executables: [String] = []
        for p in request.procs {
            do {
                executables.append(try allowList.check(p.command.program))
            } catch {
                return refuse(p.rank, error)
            }
        }
        guard let agentAddress = procFacingAddress else { return refuse(-1, .shuttingDown) }
        let inherited = processEnvironment()
        let grace = configuration.stopGrace
        let tailLines = configuration.stderrTailLines
        let lineBytes = configuration.limits.maxLineBytes
        let conflict = state.withLock { s -> SpawnRefusal? in
            if s.shuttingDown { return .shuttingDown }
            var sess = session(id, channel, in: &s)
            if sess.role == .unknown { sess.role = .client }
            s.sessions[id] = sess
            for p in request.procs {
                if request.detached {
                    // Detached names are the cluster's: one live mesh of a name per agent.
                    if s.procs.contains(where: { $0.key.owner == .cluster && $0.key.mesh == request.mesh && !$0.value.lifecycle.state.isTerminal }) {
                        return .duplicateRank(mesh: request.mesh, rank: p.rank)
                    }
                }
                if let e = s.procs[ProcKey(owner: owner, mesh: request.mesh, rank: p.rank)], !e.lifecycle.state.isTerminal {
                    return .duplicateRank(mesh: request.mesh, rank: p.rank)
                }
            }
            let config = sess.config ?? ConfigSnapshot()
            for (i, p) in request.procs.enumerated() {
                let key = ProcKey(owner: owner, mesh: request.mesh, rank: p.rank)
                if let old = s.procs[key] {
                    for t in old.timers { t.cancel() }
                    s.tokens[old.token] = nil
                }
                let env = ProcEnvironment(
                    mesh: request.mesh, rank: p.rank, worldSize: request.worldSize, hostRank: request.hostRank,
                    localRank: i, agentAddress: agentAddress, clientAddress: request.clientAddress,
                    keyFile: configuration.procKeyFile)
                var environment = inherited.merging(p.command.environment) { _, new in new }
                environment.merge(env.variables) { _, new in new }
                let token = Self.newToken()
                s.tokens[token] = key
                s.procs[key] = ProcEntry(
                    serial: s.nextSerial,
                    lifecycle: ProcLifecycle(grace: grace, restart: request.restart, readiness: request.readiness),
                    launch: LaunchSpec(executable: executables[i], argv0: p.command.program,
                                       arguments: p.command.arguments, environment: environment),
                    token: token, notify: id, config: config,
                    stdout: LineAssembler(maxLineBytes: lineBytes), stderr: LineAssembler(maxLineBytes: lineBytes),
                    tail: TailBuffer(maxLines: tailLines))
                s.nextSerial += 1
            }
            return nil
        }
        if let conflict { return refuse(request.procs.first?.rank ?? -1, conflict) }
        for p in request.procs {
            let key = ProcKey(owner: owner, mesh: request.mesh, rank: p.rank)
            channel.sendOrLog(.procState(ProcStatus(mesh: key.mesh, rank: key.rank, state: .starting)))
            launch(key)
        }
        updateLiveGauge()
        logger.info("spawning procs", metadata: [
            "session": "\(id)", "mesh": "\(request.mesh)", "count": "\(request.procs.count)", "detached": "\(request.detached)",
        ])
        return .spawnAccepted(mesh: request.mesh, ranks: request.procs.map(\.rank))
    }

    /// A fresh random token for one start of a proc (`SPINDLE_PROC_TOKEN`).
    static func newToken() -> String {
        let a = UInt64.random(in: .min ... .max), b = UInt64.random(in: .min ... .max)
        return String(a, radix: 16) + String(b, radix: 16)
    }

    private func stopDetached(_ mesh: String, channel: ControlChannel, correlation: UInt64) {
        let (keys, done) = state.withLock { s -> ([ProcKey], Bool) in
            let keys = s.procs.keys.filter { $0.owner == .cluster && $0.mesh == mesh }.sorted()
            let done = keys.allSatisfy { s.procs[$0]!.lifecycle.state.isTerminal }
            if !done {
                s.detachedStops[mesh, default: []].append(DetachedStopWaiter(channel: channel, correlation: correlation))
            }
            return (keys, done)
        }
        if done {
            channel.sendOrLog(.detachedStopped(mesh: mesh, statuses(keys)), replyTo: correlation)
            return
        }
        logger.info("stopping detached proc mesh", metadata: ["mesh": "\(mesh)", "procs": "\(keys.count)"])
        for k in keys { stopProc(k) }
        answerDetachedStops(mesh)
    }

    /// Answers the `stopDetached` requests of `mesh` once all its procs here are final.
    func answerDetachedStops(_ mesh: String) {
        let (waiters, keys) = state.withLock { s -> ([DetachedStopWaiter], [ProcKey]) in
            guard let w = s.detachedStops[mesh] else { return ([], []) }
            let keys = s.procs.keys.filter { $0.owner == .cluster && $0.mesh == mesh }.sorted()
            guard keys.allSatisfy({ s.procs[$0]!.lifecycle.state.isTerminal }) else { return ([], []) }
            s.detachedStops[mesh] = nil
            return (w, keys)
        }
        guard !waiters.isEmpty else { return }
        let final = statuses(keys)
        for w in waiters { w.channel.sendOrLog(.detachedStopped(mesh: mesh, final), replyTo: w.correlation) }
    }

    private func readLogs(_ mesh: String, owner: ProcOwner, follow: Bool, session id: SessionID,
                          channel: ControlChannel) -> HostMeshMessage {
        state.withLock { s in
            _ = session(id, channel, in: &s)
            let keys = s.procs.keys.filter { $0.owner == owner && $0.mesh == mesh }.sorted()
            var outputs: [ProcOutput] = []
            var states: [ProcStatus] = []
            for k in keys {
                outputs.append(ProcOutput(mesh: mesh, lines: Array(s.procs[k]!.recent)))
                states.append(s.procs[k]!.status(k))
                if follow { s.procs[k]!.followers.insert(id) }
            }
            return .logs(mesh: mesh, outputs, states)
        }
    }
}
