import Logging
import SpindleKernel

/// The tick algorithm. Runs only on the runner's coordinator thread; shard phases run on the
/// worker pool (in-process) or in shard servers (remote) and report through the `PhaseGate`.
///
/// ```
///  tick t:  [sense round] ─barrier─ [act round] ─barrier─ route edges & messages,
///           look up ghosts ─ [decay round: deliver, decay, export ghosts] ─barrier─
///           install ghosts ─ advance (t becomes the coordinator's tick)
/// ```
///
/// `@unchecked Sendable`: the mutable fields (`slots`, `epoch`, `pendingGhostOps`) are only
/// touched by jobs on the single coordinator thread.
final class RunnerCore: @unchecked Sendable {
    let coordinator: Coordinator
    let configuration: RunnerConfiguration
    let gate: PhaseGate
    let workers: ThreadPool?
    private(set) var slots: [ShardSlot]
    private var epoch: UInt64 = 0
    private var pendingGhostOps: [ShardID: [GhostOp]] = [:]
    private var logger: Logger { configuration.logger }

    init(coordinator: Coordinator, slots: [ShardSlot], configuration: RunnerConfiguration,
         workers: ThreadPool?) {
        self.coordinator = coordinator
        self.configuration = configuration
        self.slots = slots.sorted { $0.id < $1.id }
        self.workers = workers
        self.gate = PhaseGate(barrier: coordinator.makeBarrier(phaseTimeout: configuration.phaseTimeout),
                              clock: coordinator.clock, spinIterations: configuration.spinIterations)
        self.epoch = coordinator.membership.epoch
    }

    var clock: any SpindleClock { coordinator.clock }

    /// Drops shards that left the coordinator's registry and every ghost copy of their nodes.
    func reconcileMembership() {
        let m = coordinator.membership
        guard m.epoch != epoch else { return }
        epoch = m.epoch
        let registered = Set(m.shards)
        let gone = slots.filter { !registered.contains($0.id) }
        guard !gone.isEmpty else { return }
        slots.removeAll { !registered.contains($0.id) }
        for g in gone {
            pendingGhostOps[g.id] = nil
            for s in slots {
                let dropped = s.ghosts.cache.withLock { $0.invalidate(owner: g.id) }
                if s.remote != nil, !dropped.isEmpty {
                    pendingGhostOps[s.id, default: []].append(contentsOf: dropped.map { .remove($0) })
                }
            }
            logger.info("shard left the runner; ghost copies of its nodes dropped",
                        metadata: ["shard": "\(g.id)"])
        }
    }

    /// Runs one tick.
    func runTick() -> Result<TickResult, RunnerError> {
        reconcileMembership()
        guard !slots.isEmpty else { return .failure(.noShards) }
        let tick = coordinator.currentTick + 1
        let started = clock.now()
        let stillBusy = gate.awaitIdle(slots.compactMap { $0.local == nil ? nil : $0.id },
                                       deadline: started + configuration.phaseTimeout)
        guard stillBusy.isEmpty else { return .failure(.shardsBusy(shards: stillBusy, tick: tick)) }
        let placement = coordinator.placement

        // Sense.
        let sense: [ShardID: PhaseOutcome]
        switch runRound(.sense, tick: tick, placement: placement, deliveries: [:], ghostRequests: [:]) {
        case .success(let o): sense = o
        case .failure(let e): return .failure(e)
        }

        // Act.
        let act: [ShardID: PhaseOutcome]
        switch runRound(.act, tick: tick, placement: placement, deliveries: [:], ghostRequests: [:]) {
        case .success(let o): act = o
        case .failure(let e): return .failure(e)
        }

        // Route what Act emitted; look the edges' targets up in the ghost caches.
        let routing: Routing
        switch route(act, tick: tick, placement: placement) {
        case .success(let r): routing = r
        case .failure(let e): return .failure(e)
        }

        // Decay (delivery first, ghost export after).
        let decay: [ShardID: PhaseOutcome]
        switch runRound(.decay, tick: tick, placement: placement, deliveries: routing.deliveries,
                        ghostRequests: routing.ghostRequests) {
        case .success(let o): decay = o
        case .failure(let e): return .failure(e)
        }
        install(decay, requesters: routing.requesters)

        // Advance.
        coordinator.advance()
        let stamp = coordinator.hlc.tick()
        var shardResults: [ShardTickResult] = []
        shardResults.reserveCapacity(slots.count)
        for slot in slots {
            var phases: [PhaseResult] = []
            for (phase, outcomes) in [(Phase.sense, sense), (.act, act), (.decay, decay)] {
                guard let o = outcomes[slot.id], case .success(let w) = o.result else { continue }
                phases.append(PhaseResult(phase: phase, duration: o.duration, processed: w.processed,
                                          edgesEmitted: phase == .act ? w.edges.count : 0,
                                          messagesEmitted: phase == .act ? w.messages.count : 0,
                                          stamp: o.stamp))
            }
            shardResults.append(ShardTickResult(shard: slot.id, phases: phases))
        }
        return .success(TickResult(tick: tick, shards: shardResults, crossShardEdges: routing.edges,
                                   messageCount: routing.messageCount, ghostHits: routing.ghostHits,
                                   ghostMisses: routing.ghostMisses, duration: clock.now() - started,
                                   stamp: stamp))
    }

    /// Runs one phase on every shard and waits at the barrier.
    private func runRound(_ phase: Phase, tick: UInt64, placement: ShardPlacement,
                          deliveries: [ShardID: ShardDelivery],
                          ghostRequests: [ShardID: [NodeKey]]) -> Result<[ShardID: PhaseOutcome], RunnerError> {
        let ids = slots.map(\.id)
        let localIDs = slots.compactMap { $0.local == nil ? nil : $0.id }
        let round = gate.begin(tick: tick, phase: phase, shards: ids, local: localIDs)
        var jobs: [ThreadPool.Job] = []
        jobs.reserveCapacity(localIDs.count)
        for slot in slots {
            let delivery = deliveries[slot.id] ?? ShardDelivery()
            let requests = ghostRequests[slot.id] ?? []
            switch slot.member {
            case .local(let shard):
                let context = ShardContext(
                    tick: tick, phase: phase, shard: slot.id, placement: placement, logger: logger,
                    ghostView: configuration.ghostResolution ? .cache(slot.ghosts) : nil)
                let gate = self.gate
                let clock = self.clock
                let hlc = coordinator.hlc
                jobs.append {
                    let t0 = clock.now()
                    let result = PhaseExecution.run(shard, context: context, delivery: delivery,
                                                    ghostRequests: requests)
                    let elapsed = clock.now() - t0
                    gate.arrive(PhaseOutcome(shard: context.shard, result: result, duration: elapsed,
                                             stamp: hlc.tick()),
                                round: round, fromLocalThread: true)
                }
            case .remote(let remote):
                var request = PhaseRequest(round: round, tick: tick, phase: phase,
                                           placementShards: placement.shards,
                                           virtualNodes: placement.virtualNodes,
                                           delivery: delivery, ghostRequests: requests)
                if phase == .sense, let ops = pendingGhostOps.removeValue(forKey: slot.id) {
                    request.ghostOps = ops
                }
                do {
                    try remote.send(request, stamp: coordinator.hlc.tick())
                } catch {
                    gate.fail(slot.id, reason: "\(error)")
                }
            }
        }
        if !jobs.isEmpty { workers?.submit(contentsOf: jobs) }
        switch gate.waitForRound(round) {
        case .failure(let e):
            logger.warning("\(e)")
            return .failure(e)
        case .success(let outcomes):
            // The lowest failing shard id names the failure, so the error is deterministic.
            for id in ids {
                if let o = outcomes[id], case .failure(let f) = o.result {
                    return .failure(.shardFailed(shard: id, phase: phase, tick: tick, reason: f.reason))
                }
            }
            return .success(outcomes)
        }
    }

    private struct Routing {
        var deliveries: [ShardID: ShardDelivery] = [:]
        var edges: [CrossShardEdge] = []
        var messageCount = 0
        var ghostRequests: [ShardID: [NodeKey]] = [:]
        var requesters: [NodeKey: [ShardID]] = [:]
        var ghostHits = 0
        var ghostMisses = 0
    }

    /// Resolves the shards of Act's edges and messages, groups them per target shard (in
    /// emitting-shard order, then emission order) and finds ghost misses.
    private func route(_ act: [ShardID: PhaseOutcome], tick: UInt64,
                       placement: ShardPlacement) -> Result<Routing, RunnerError> {
        var r = Routing()
        // Per-target accumulators in arrays (indexed by slot position) so appends stay in place.
        var position: [ShardID: Int] = [:]
        for (i, s) in slots.enumerated() { position[s.id] = i }
        var edgesFor = [[CrossShardEdge]](repeating: [], count: slots.count)
        var messagesFor = [[ShardMessage]](repeating: [], count: slots.count)
        var requestsFor = [[NodeKey]](repeating: [], count: slots.count)
        var requested = Set<NodeKey>()
        for slot in slots {
            guard let o = act[slot.id], case .success(let work) = o.result else { continue }
            if !work.edges.isEmpty {
                let lookups: (hits: Int, misses: [NodeKey]) = configuration.ghostResolution
                    ? slot.ghosts.cache.withLock { cache in
                        var hits = 0
                        var misses: [NodeKey] = []
                        for e in work.edges where placement.owner(of: e.target) != slot.id {
                            if cache.touch(e.target) != nil { hits += 1 } else { misses.append(e.target) }
                        }
                        return (hits, misses)
                    }
                    : (0, [])
                r.ghostHits += lookups.hits
                r.ghostMisses += lookups.misses.count
                for e in work.edges {
                    guard let owner = placement.owner(of: e.target), let at = position[owner] else {
                        return .failure(.unknownTarget(target: "owner of \(e.target)", emittedBy: slot.id, tick: tick))
                    }
                    let edge = CrossShardEdge(source: e.source, target: e.target, sourceShard: slot.id,
                                              targetShard: owner, weight: e.weight)
                    r.edges.append(edge)
                    edgesFor[at].append(edge)
                }
                for k in lookups.misses {
                    // Known to resolve: every edge target's owner was checked above.
                    let at = position[placement.owner(of: k)!]!
                    if requested.insert(k).inserted { requestsFor[at].append(k) }
                    if !(r.requesters[k]?.contains(slot.id) ?? false) { r.requesters[k, default: []].append(slot.id) }
                }
            }
            for m in work.messages {
                guard let at = position[m.to] else {
                    return .failure(.unknownTarget(target: "\(m.to)", emittedBy: slot.id, tick: tick))
                }
                messagesFor[at].append(ShardMessage(from: slot.id, to: m.to, payload: m.payload))
                r.messageCount += 1
            }
        }
        for (i, s) in slots.enumerated() {
            if !edgesFor[i].isEmpty || !messagesFor[i].isEmpty {
                r.deliveries[s.id] = ShardDelivery(edges: edgesFor[i], messages: messagesFor[i])
            }
            if !requestsFor[i].isEmpty { r.ghostRequests[s.id] = requestsFor[i] }
        }
        return .success(r)
    }

    /// Puts the ghosts exported in Decay into the caches of the shards that asked for them.
    private func install(_ decay: [ShardID: PhaseOutcome], requesters: [NodeKey: [ShardID]]) {
        guard !requesters.isEmpty else { return }
        let byID = Dictionary(uniqueKeysWithValues: slots.map { ($0.id, $0) })
        for owner in slots {
            guard let o = decay[owner.id], case .success(let work) = o.result else { continue }
            for g in work.ghosts {
                for requester in requesters[g.key] ?? [] {
                    guard let slot = byID[requester] else { continue }
                    let evicted = slot.ghosts.cache.withLock { $0.insert(g) }
                    if slot.remote != nil {
                        pendingGhostOps[requester, default: []].append(.install(g))
                        if let k = evicted { pendingGhostOps[requester, default: []].append(.remove(k)) }
                    }
                }
            }
        }
    }

    /// Digests of the in-process shards (remote digests are fetched by the caller).
    func localDigests() -> Result<[ShardID: UInt64], RunnerError> {
        let busy = slots.filter { $0.local != nil && gate.isBusy($0.id) }.map(\.id)
        guard busy.isEmpty else { return .failure(.shardsBusy(shards: busy, tick: coordinator.currentTick + 1)) }
        var out: [ShardID: UInt64] = [:]
        for s in slots { if let l = s.local { out[s.id] = l.stateDigest() } }
        return .success(out)
    }
}
