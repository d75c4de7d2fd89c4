import Logging
import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

extension HostAgent {
    /// Handles one request or push from a client or a proc.
    func handle(_ message: HostMeshMessage, correlation: UInt64, from link: ControlLink) {
        switch message {
        case .installConfig(let snapshot):
            link.sendOrLog(installConfig(snapshot, from: link), replyTo: correlation)
        case .spawn(let request):
            link.sendOrLog(spawn(request, from: link), replyTo: correlation)
        case .stop(let mesh):
            let keys = state.withLock { s in s.procs.keys.filter { $0.mesh == mesh }.sorted() }
            for k in keys { stopProc(k) }
            link.sendOrLog(.stopAccepted(mesh: mesh, ranks: keys.map(\.rank)), replyTo: correlation)
        case .queryStates(let mesh):
            let statuses = state.withLock { s in
                s.procs.keys.filter { $0.mesh == mesh }.sorted().map { s.procs[$0]!.status($0) }
            }
            link.sendOrLog(.states(mesh: mesh, statuses), replyTo: correlation)
        case .agentInfo:
            let info = state.withLock { s in
                AgentInfo(address: s.address ?? configuration.listenAddress, pid: getpid(),
                          configDigest: s.config?.digest,
                          procs: s.procs.keys.sorted().map { s.procs[$0]!.status($0) })
            }
            link.sendOrLog(.info(info), replyTo: correlation)
        case .procHello(let mesh, let rank, let pid):
            let key = ProcKey(mesh: mesh, rank: rank)
            let reply = state.withLock { s -> HostMeshMessage in
                guard let e = s.procs[key], !e.lifecycle.state.isTerminal else {
                    return .procRejected(reason: "this agent runs no live proc of rank \(rank) in mesh \"\(mesh)\"")
                }
                return .procWelcome(s.config ?? ConfigSnapshot())
            }
            if case .procRejected(let why) = reply {
                logger.warning("refused a proc hello", metadata: ["peer": "\(link.remoteAddress)", "pid": "\(pid)", "reason": "\(why)"])
            }
            link.sendOrLog(reply, replyTo: correlation)
        case .procReady(let mesh, let rank):
            step(ProcKey(mesh: mesh, rank: rank)) { e, _ in e.lifecycle.announcedReady() }
        case .fetchConfig:
            let config = state.withLock { $0.config } ?? ConfigSnapshot()
            link.sendOrLog(.config(config), replyTo: correlation)
        case .configInstalled, .configRejected, .spawnAccepted, .spawnRefused, .procState,
             .stopAccepted, .states, .info, .procWelcome, .procRejected, .config, .failure:
            logger.warning("unexpected host-mesh message", metadata: ["peer": "\(link.remoteAddress)", "kind": "\(message.kind)"])
            if correlation != 0 {
                link.sendOrLog(.failure("a host agent does not accept message kind \(message.kind)"), replyTo: correlation)
            }
        }
    }

    private func installConfig(_ snapshot: ConfigSnapshot, from link: ControlLink) -> HostMeshMessage {
        if let problem = snapshot.problem ?? configuration.configValidator?(snapshot) {
            logger.warning("rejected config snapshot", metadata: ["peer": "\(link.remoteAddress)", "reason": "\(problem)"])
            return .configRejected(reason: problem)
        }
        let replaced = state.withLock { s -> Bool in
            defer { s.config = snapshot }
            return s.config != nil && s.config != snapshot
        }
        logger.info("installed config snapshot", metadata: [
            "digest": "\(String(snapshot.digest, radix: 16))", "keys": "\(snapshot.values.count)", "replaced": "\(replaced)",
        ])
        return .configInstalled(digest: snapshot.digest)
    }

    /// Validates a spawn request as a whole (all its procs start, or none), then starts them.
    private func spawn(_ request: SpawnRequest, from link: ControlLink) -> HostMeshMessage {
        let refuse = { (rank: Int, refusal: SpawnRefusal) -> HostMeshMessage in
            self.logger.warning("refused spawn", metadata: [
                "peer": "\(link.remoteAddress)", "mesh": "\(request.mesh)", "rank": "\(rank)", "reason": "\(refusal)",
            ])
            return .spawnRefused(mesh: request.mesh, rank: rank, refusal: refusal)
        }
        guard !request.mesh.isEmpty else { return refuse(-1, .invalidRequest("empty mesh name")) }
        var seen = Set<Int>()
        var executables: [String] = []
        for p in request.procs {
            guard p.rank >= 0, p.rank < request.worldSize, seen.insert(p.rank).inserted else {
                return refuse(p.rank, .invalidRequest("rank \(p.rank) repeated or outside 0..<\(request.worldSize)"))
            }
            do {
                executables.append(try allowList.check(p.command.program))
            } catch {
                return refuse(p.rank, error)
            }
        }
        guard let agentAddress = procFacingAddress else { return refuse(-1, .shuttingDown) }
        let owner = ObjectIdentifier(link)
        let linkOpen = link.closeReason == nil
        let conflict = state.withLock { s -> SpawnRefusal? in
            if s.shuttingDown { return .shuttingDown }
            // State pushes go to the owner through `links`: make sure it is there even if
            // this request overtook `accept`'s registration.
            if linkOpen { s.links[owner] = link }
            for p in request.procs {
                if let e = s.procs[ProcKey(mesh: request.mesh, rank: p.rank)], !e.lifecycle.state.isTerminal {
                    return .duplicateRank(mesh: request.mesh, rank: p.rank)
                }
            }
            for p in request.procs {
                s.procs[ProcKey(mesh: request.mesh, rank: p.rank)] = ProcEntry(
                    lifecycle: ProcLifecycle(grace: configuration.stopGrace), owner: owner,
                    stderr: TailBuffer(maxLines: configuration.stderrTailLines))
            }
            return nil
        }
        if let conflict {
            return refuse(request.procs.first?.rank ?? -1, conflict)
        }
        let inherited = processEnvironment()
        for (i, p) in request.procs.enumerated() {
            let key = ProcKey(mesh: request.mesh, rank: p.rank)
            let env = ProcEnvironment(
                mesh: request.mesh, rank: p.rank, worldSize: request.worldSize, hostRank: request.hostRank,
                localRank: i, agentAddress: agentAddress, clientAddress: request.clientAddress,
                keyFile: configuration.procKeyFile)
            var environment = inherited.merging(p.command.environment) { _, new in new }
            environment.merge(env.variables) { _, new in new }
            link.sendOrLog(.procState(ProcStatus(mesh: key.mesh, rank: key.rank, state: .starting)))
            launch(key, executable: executables[i], arguments: p.command.arguments, environment: environment)
        }
        logger.info("spawning procs", metadata: ["mesh": "\(request.mesh)", "count": "\(request.procs.count)"])
        return .spawnAccepted(mesh: request.mesh, ranks: request.procs.map(\.rank))
    }
}
