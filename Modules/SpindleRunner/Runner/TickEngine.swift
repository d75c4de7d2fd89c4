import Logging
import SpindleKernel
import SpindleTasklets
import Synchronization

/// What the lanes do in one fork of the runner's launch.
enum LaneOperation: Sendable {
    /// Run a phase on the lane's in-process shards.
    case phase(Phase)
    /// Put the lane's shards back to their rollback point (the tick's start).
    case rollback
    /// Snapshot the lane's shards into their slots (`transfer`) and take their digests.
    case snapshot
    /// Restore the lane's shards from their slots' `transfer`.
    case restore
}

/// The tick algorithm. A tick (and a run of ticks) is one launch on the tasklet pool: the
/// coordinator lane runs this loop, and each phase forks the pool's lanes over the in-process
/// shards — shards are work items, split into one contiguous block per lane — while remote
/// shards run in their servers. The pool's join is the barrier for in-process shards; remote
/// shards arrive through `RoundGate`, which also decides timeouts.
///
/// ```
///  tick t:  [sense: install ghosts, keep rollback point, sense] ─join/barrier─
///           [act: act, route edges per target, touch ghost caches] ─join/barrier─
///           [decay: gather deliveries, deliver, decay, export ghosts] ─join/barrier─
///           combine collectives ─ advance (t becomes the coordinator's tick)
/// ```
///
/// `@unchecked Sendable` and `@exclusivity(unchecked)`: the mutable fields are written only by
/// the coordinator lane of the runner's launch, or by the runner's shell while no launch runs (the shell serialises its
/// operations and waits for launches in flight); the lanes read the per-operation fields
/// (`operation`, `tick`, `round`, `placement`, `collectives`, …) between a fork and its join,
/// after the coordinator lane wrote them before the fork. The watchdog touches only the gate.
final class TickEngine: @unchecked Sendable {
    let coordinator: Coordinator
    let configuration: RunnerConfiguration
    let gate: RoundGate
    let clock: any SpindleClock
    let logger: Logger
    let registry: [String: AnyCollective]
    let metrics: RunnerMetrics

    /// Every shard, in increasing id order (a slot's `position` is its index here).
    @exclusivity(unchecked) private(set) var slots: [ShardSlot] = []
    @exclusivity(unchecked) private(set) var localSlots: [ShardSlot] = []
    @exclusivity(unchecked) private(set) var remoteSlots: [ShardSlot] = []
    @exclusivity(unchecked) private(set) var ids: [ShardID] = []
    /// The in-process shards' slot positions.
    @exclusivity(unchecked) private var localPositions: [Int] = []
    @exclusivity(unchecked) private var positionOfID: [ShardID: Int] = [:]
    @exclusivity(unchecked) private var epoch: UInt64 = .max
    @exclusivity(unchecked) private(set) var placement: ShardPlacement
    /// Placement position → slot position (-1: a registered shard this runner does not run).
    @exclusivity(unchecked) private(set) var placementToSlot: [Int] = []

    // Set by the coordinator lane before each fork; read by the lanes.
    @exclusivity(unchecked) private var operation = LaneOperation.phase(.sense)
    @exclusivity(unchecked) private(set) var tick: UInt64 = 0
    @exclusivity(unchecked) private var round: UInt64 = 0
    /// The coordinator's clock at the last barrier (the next round begins then).
    @exclusivity(unchecked) private(set) var now: MonotonicInstant = .zero
    @exclusivity(unchecked) private(set) var saveRollbackPoint = false
    /// Whether any shard's Act emitted something this tick (else Decay skips gathering).
    @exclusivity(unchecked) private(set) var anyRouted = false
    /// The last completed tick's collective results (what the next Sense sees).
    @exclusivity(unchecked) var collectives = CollectiveResults() {
        didSet { collectivesEpoch &+= 1 }
    }
    /// Changes whenever `collectives` is replaced (shards' contexts catch up in their Sense).
    @exclusivity(unchecked) private(set) var collectivesEpoch: UInt64 = 1
    /// Ghost cache changes not yet sent to remote shards' mirrors.
    @exclusivity(unchecked) var pendingGhostOps: [ShardID: [GhostOp]] = [:]
    /// Spin budget of the coordinator lane waiting for remote shards.
    private let remoteSpinNanoseconds: UInt64
    /// Whether the coordinator's clock is the system clock (shard phases are then timed with
    /// the cheaper lane stopwatch).
    private let systemClock: Bool

    init(coordinator: Coordinator, members: [ShardMember], configuration: RunnerConfiguration) {
        self.coordinator = coordinator
        self.configuration = configuration
        self.clock = coordinator.clock
        self.systemClock = coordinator.clock is SystemClock
        self.logger = configuration.logger
        self.metrics = RunnerMetrics(factory: configuration.metricsFactory)
        self.gate = RoundGate(barrier: coordinator.makeBarrier(phaseTimeout: configuration.phaseTimeout),
                              clock: coordinator.clock)
        var registry: [String: AnyCollective] = [:]
        for c in configuration.collectives { registry[c.name] = c }
        self.registry = registry
        self.placement = coordinator.placement
        // A remote shard answers after at least a loopback round trip (tens of µs): spin for
        // a fraction of the pool's budget, then park so the transport's thread gets the core.
        remoteSpinNanoseconds = min(configuration.pool.configuration.waitPolicy.spinNanoseconds, 20_000)
        let sorted = members.sorted { $0.id < $1.id }
        slots = sorted.enumerated().map { ShardSlot(member: $1, position: $0, ghostCapacity: configuration.ghostCacheCapacity) }
        rebuildIndexes()
        for slot in slots { if let r = slot.remote { attach(r) } }
        _ = reconcileMembership()
    }

    /// Lanes a launch uses: one per in-process shard, at most `parallelism`.
    var laneCount: Int { max(1, min(configuration.parallelism, localSlots.count)) }

    /// Whether every shard keeps a rollback point (learned in the first tick).
    var rollbackAvailable: Bool { !slots.contains { $0.snapshots == .unsupported } }

    private func rebuildIndexes() {
        for (i, s) in slots.enumerated() { s.position = i }
        ids = slots.map(\.id)
        localSlots = slots.filter { $0.local != nil }
        remoteSlots = slots.filter { $0.remote != nil }
        localPositions = localSlots.map(\.position)
        gate.setLocal(localSlots)
        positionOfID = Dictionary(uniqueKeysWithValues: slots.map { ($0.id, $0.position) })
        placementToSlot = placement.shards.map { positionOfID[$0] ?? -1 }
        for s in localSlots {
            var shardLogger = logger
            shardLogger[metadataKey: "shard"] = "\(s.id)"
            s.context = ShardContext(tick: tick, phase: .sense, shard: s.id, placement: placement.unshared(),
                                     logger: shardLogger,
                                     ghostView: configuration.ghostResolution ? .cache(s.ghosts) : nil,
                                     collectives: collectives, sink: s.sink)
            s.contextCollectivesEpoch = collectivesEpoch
        }
    }

    /// Installs the runner's handlers on a remote shard's connection.
    func attach(_ remote: RemoteShard) {
        let gate = self.gate
        let hlc = coordinator.hlc
        let id = remote.id
        remote.attach(
            onReply: { reply, stamp in
                let arrival = hlc.receive(stamp)
                gate.arriveRemote(reply.shard, round: reply.round,
                                  RemoteArrival(result: reply.result, duration: reply.duration, stamp: arrival,
                                                rollbackPointSaved: reply.rollbackPointSaved))
            },
            onClose: { reason in gate.lost(id, reason: "connection lost: \(reason)") })
    }

    /// A new server took over a remote shard (respawn).
    func replaceRemote(_ id: ShardID, with remote: RemoteShard) {
        guard let p = positionOfID[id] else { return }
        slots[p].remote?.detach()
        slots[p].member = .remote(remote)
        attach(remote)
        rebuildIndexes()
    }

    /// Drops shards that left the coordinator's registry (and every ghost copy of their nodes)
    /// and takes up a changed placement.
    /// - Returns: the remote shards that left (to be stopped).
    func reconcileMembership() -> [RemoteShard] {
        guard coordinator.membershipEpoch != epoch else { return [] }
        let m = coordinator.membership
        guard m.epoch != epoch else { return [] }
        epoch = m.epoch
        placement = m.placement
        let registered = Set(m.shards)
        let gone = slots.filter { !registered.contains($0.id) }
        if !gone.isEmpty {
            slots.removeAll { !registered.contains($0.id) }
            for g in gone {
                pendingGhostOps[g.id] = nil
                g.remote?.detach()
                for s in slots {
                    let dropped = s.ghosts.cache.withLock { $0.invalidate(owner: g.id) }
                    if s.remote != nil, !dropped.isEmpty {
                        pendingGhostOps[s.id, default: []].append(contentsOf: dropped.map { .remove($0) })
                    }
                    s.pendingInstalls.removeAll { placement.owner(of: $0) == g.id }
                }
                logger.info("shard left the runner; ghost copies of its nodes dropped", metadata: ["shard": "\(g.id)"])
            }
        }
        rebuildIndexes()
        return gone.compactMap(\.remote)
    }

    func position(of id: ShardID) -> Int? { positionOfID[id] }

    // MARK: The launch

    /// Runs up to `count` ticks (the body of one pool launch).
    func runTicks(_ coord: CoordinatorContext<TickEngine, Void>, count: Int, completion: SegmentCompletion,
                  inFlight: InFlight) -> SegmentOutcome {
        for _ in 0..<count {
            for r in reconcileMembership() { r.stop() }
            guard !slots.isEmpty else {
                completion.resolve(failure: SegmentFailure(error: .noShards, tick: coordinator.currentTick + 1))
                return SegmentOutcome(results: completion.results, failure: SegmentFailure(error: .noShards, tick: coordinator.currentTick + 1))
            }
            switch runTick(coord, completion: completion, inFlight: inFlight) {
            case .success(let r): completion.append(r)
            case .failure(let f): return SegmentOutcome(results: completion.results, failure: f)
            }
        }
        return SegmentOutcome(results: completion.results, failure: nil)
    }

    /// Runs a lane operation other than a phase (rollback, snapshot, restore) on every
    /// in-process shard, in parallel.
    func runOnLanes(_ coord: CoordinatorContext<TickEngine, Void>, _ op: LaneOperation) {
        guard !localSlots.isEmpty else { return }
        operation = op
        for s in localSlots { s.result = .success(0) }
        fork(coord)
    }

    /// Watches the running launch's barrier rounds from outside it (a lane may be stuck in a
    /// shard's phase code, the coordinator lane included): answers `completion` with the
    /// timeout as soon as a round's deadline passes. Ends when `completion` is answered or the
    /// task is cancelled.
    func watch(completion: SegmentCompletion, inFlight: InFlight) async {
        let shortest = min(configuration.phaseTimeout, coordinator.configuration.barrierIdleTimeout ?? configuration.phaseTimeout)
        let manualClock = !(clock is SystemClock)
        while !completion.isResolved {
            let now = clock.now()
            // A round that begins later times out no sooner than `shortest` from now.
            var wait = gate.deadline.map { $0 - now } ?? shortest
            if manualClock { wait = min(wait, .milliseconds(20)) }
            wait = max(wait, .milliseconds(1))
            guard (try? await Task.sleep(for: wait)) != nil else { return }
            // Only a lane stuck in shard code needs the watchdog; a round that waits for remote
            // shards times out on the coordinator lane, which then decides what follows.
            if case .timedOut(let e) = gate.watch(), gate.localMissing {
                inFlight.markBusy(gate.stillRunning)
                var failure = SegmentFailure(error: e, tick: coordinator.currentTick + 1)
                failure.timedOut = true
                completion.resolve(failure: failure)
                return
            }
        }
    }

    private func fork(_ coord: CoordinatorContext<TickEngine, Void>) {
        do {
            try coord.parallelForWorkers(includingCoordinator: true) { w in
                w.shared.laneWork(lane: w.lane, lanes: w.workerCount)
            }
        } catch {
            // Lane bodies do not throw; only a cancelled launch gets here. Every shard of the
            // fork is marked failed so the tick fails naming them.
            for s in localSlots { s.result = .failure(PhaseFailure(reason: "the tasklet launch was cancelled: \(error)")) }
        }
    }

    /// One lane's share of the in-process shards for the current operation.
    func laneWork(lane: Int, lanes: Int) {
        let n = localSlots.count
        let lo = lane * n / lanes
        let hi = (lane + 1) * n / lanes
        guard lo < hi else { return }
        var t0 = stopwatch()
        for k in lo..<hi {
            let slot = localSlots[k]
            let shard = slot.shard
            slot.running.store(true, ordering: .relaxed)
            switch operation {
            case .phase(let phase):
                let processed = runLocal(slot, shard, phase: phase)
                let t1 = stopwatch()
                slot.setDuration(elapsed(t0, t1), processed: processed, for: phase)
                t0 = t1
                slot.running.store(false, ordering: .relaxed)
                slot.doneRound.store(round, ordering: .releasing)
                continue
            case .rollback:
                rollbackLocal(slot, shard)
            case .snapshot:
                slot.transferError = nil
                do {
                    slot.transfer = try shard.snapshot()
                    slot.snapshotDigest = shard.stateDigest()
                } catch {
                    slot.transferError = (error as? RunnerError)
                        ?? .snapshotFailed(shard: slot.id, operation: "snapshot", reason: "\(error)")
                }
            case .restore:
                slot.transferError = nil
                do {
                    try shard.restore(slot.transfer)
                } catch {
                    slot.transferError = (error as? RunnerError)
                        ?? .snapshotFailed(shard: slot.id, operation: "restore", reason: "\(error)")
                }
                slot.transfer = []
            }
            slot.running.store(false, ordering: .relaxed)
        }
    }

    /// A stamp for timing a shard's phase on its lane: the CPU's cycle counter (via the
    /// tasklet pool's stopwatch) with the system clock, else the coordinator's clock.
    @inline(__always)
    private func stopwatch() -> UInt64 {
        systemClock ? LaneStopwatch.now() : clock.now().nanoseconds
    }

    private func elapsed(_ t0: UInt64, _ t1: UInt64) -> Duration {
        systemClock ? LaneStopwatch.duration(from: t0, to: t1) : .nanoseconds(Int64(clamping: t1 &- t0))
    }

    /// Runs `phase` of one in-process shard; returns what it processed.
    private func runLocal(_ slot: ShardSlot, _ shard: any Shard, phase: Phase) -> Int {
        slot.context.tick = tick
        slot.context.phase = phase
        if phase == .sense, slot.contextCollectivesEpoch != collectivesEpoch {
            slot.context.collectives = collectives
            slot.contextCollectivesEpoch = collectivesEpoch
        }
        let context = slot.context
        do {
            switch phase {
            case .sense:
                installPending(slot)
                if saveRollbackPoint, let failure = keepRollbackPoint(slot, shard) {
                    slot.result = .failure(failure)
                    return 0
                }
                slot.sink.reset()
                let n = try shard.sense(context)
                slot.result = .success(n)
                return n
            case .act:
                var output = ActOutput()
                let n = try shard.act(context, output: &output)
                route(edges: output.edges, messages: output.messages, from: slot)
                slot.result = .success(n)
                return n
            case .decay:
                try shard.deliver(anyRouted ? delivery(for: slot.position) : ShardDelivery(), context: context)
                let n = try shard.decay(context)
                let requests = anyRouted ? ghostRequests(for: slot.position) : []
                if requests.isEmpty {
                    if !slot.exports.isEmpty { slot.exports = [:] }
                } else {
                    slot.exports = Dictionary(
                        PhaseExecution.exportGhosts(shard, keys: requests, context: context).map { ($0.key, $0) },
                        uniquingKeysWith: { first, _ in first })
                }
                if let conflict = slot.sink.conflict {
                    slot.result = .failure(PhaseFailure(reason: conflict))
                } else {
                    slot.result = .success(n)
                }
                return n
            }
        } catch {
            slot.result = .failure(PhaseFailure(reason: "\(error)"))
            return 0
        }
    }

    /// Keeps the shard's state and ghost cache as they are at the tick's start.
    /// - Returns: a failure when the snapshot threw (other than "unsupported").
    private func keepRollbackPoint(_ slot: ShardSlot, _ shard: any Shard) -> PhaseFailure? {
        if slot.snapshots != .unsupported {
            do {
                // The last tick's buffer is reused (moved out, so it is not shared).
                var buffer = slot.savedSnapshot ?? []
                slot.savedSnapshot = nil
                try shard.snapshot(into: &buffer)
                slot.savedSnapshot = buffer
                slot.snapshots = .supported
            } catch let e as RunnerError {
                guard case .snapshotUnsupported = e else {
                    return PhaseFailure(reason: "the snapshot at the start of the tick failed: \(e)")
                }
                slot.snapshots = .unsupported
                slot.savedSnapshot = nil
            } catch {
                return PhaseFailure(reason: "the snapshot at the start of the tick failed: \(error)")
            }
        }
        saveGhosts(slot)
        return nil
    }

    private func rollbackLocal(_ slot: ShardSlot, _ shard: any Shard) {
        slot.result = .success(0)
        if let saved = slot.savedSnapshot {
            do { try shard.restore(saved) } catch {
                slot.result = .failure(PhaseFailure(reason: "\(error)"))
            }
        }
        if let g = slot.savedGhosts { slot.ghosts.cache.withLock { $0 = g } }
        slot.sink.reset()
    }

    // MARK: One tick

    private func runTick(_ coord: CoordinatorContext<TickEngine, Void>, completion: SegmentCompletion,
                         inFlight: InFlight) -> Result<TickResult, SegmentFailure> {
        let started = gate.now()
        now = started
        tick = coordinator.currentTick + 1
        saveRollbackPoint = configuration.rollback == .tickStart && rollbackAvailable
        for s in slots {
            s.lost = false
            if !saveRollbackPoint, s.savedSnapshot != nil || s.savedGhosts != nil {
                s.savedSnapshot = nil
                s.savedGhosts = nil
            }
        }
        for phase in Phase.allCases {
            if let failure = runRound(coord, phase: phase, completion: completion, inFlight: inFlight) {
                return .failure(failure)
            }
        }
        let results: CollectiveResults
        switch combineCollectives() {
        case .success(let r): results = r
        case .failure(let e): return .failure(fail(coord, e, phase: .decay, completion: completion, inFlight: inFlight))
        }
        // The tick is done: commit.
        if !(results.isEmpty && collectives.isEmpty) { collectives = results }
        for s in slots where !(s.pendingInstalls.isEmpty && s.routing.installOrder.isEmpty) {
            s.pendingInstalls = s.routing.installOrder
        }
        coordinator.advance()
        let result = tickResult(started: started, collectives: results)
        metrics.completed(result, from: started, to: now)
        return .success(result)
    }

    /// Runs one phase on every shard and waits at the barrier.
    /// - Returns: the tick's failure, if the phase failed.
    private func runRound(_ coord: CoordinatorContext<TickEngine, Void>, phase: Phase, completion: SegmentCompletion,
                          inFlight: InFlight) -> SegmentFailure? {
        var remoteRequests: [PhaseRequest] = []
        if !remoteSlots.isEmpty {
            switch prepareRemote(phase) {
            case .success(let r): remoteRequests = r
            case .failure(let e): return fail(coord, e, phase: phase, completion: completion, inFlight: inFlight)
            }
        }
        // One clock read per phase: a round begins at the instant the previous one ended.
        let begun = now
        round = gate.begin(tick: tick, phase: phase, shards: ids, now: begun)
        let stamp = remoteSlots.isEmpty ? .zero : coordinator.hlc.tick()
        for (slot, var request) in zip(remoteSlots, remoteRequests) {
            request.round = round
            do {
                try slot.remote!.send(request, stamp: stamp)
            } catch {
                gate.lost(slot.id, reason: "\(error)")
            }
        }
        var poll: PhaseBarrier.Poll
        if localSlots.isEmpty {
            poll = gate.arriveLocal([], round: round, now: now)
        } else {
            operation = .phase(phase)
            fork(coord)
            now = gate.now()
            poll = gate.arriveLocal(localPositions, round: round, now: now)
            let arrival = coordinator.hlc.tick()
            for s in localSlots { s.setStamp(arrival, for: phase) }
        }
        if case .waiting = poll {
            poll = gate.wait(for: round, spinNanoseconds: remoteSpinNanoseconds)
            now = gate.now()
        }
        if case .timedOut(let e) = poll {
            return fail(coord, e, phase: phase, completion: completion, inFlight: inFlight, timedOut: true)
        }
        // Every shard has arrived: the round took from its start to the barrier.
        metrics.phase(phase, from: begun, to: now)
        gate.reset()
        if !remoteSlots.isEmpty { takeRemoteOutcomes(phase) }
        // The lowest failing shard names the failure, so the error is deterministic.
        for s in slots {
            guard case .failure(let f) = s.result else { continue }
            let error: RunnerError = s.lost
                ? .shardLost(shard: s.id, tick: tick, reason: f.reason)
                : .shardFailed(shard: s.id, phase: phase, tick: tick, reason: f.reason)
            return fail(coord, error, phase: phase, completion: completion, inFlight: inFlight)
        }
        if phase == .act {
            anyRouted = false
            for s in slots where !s.routing.isEmpty {
                anyRouted = true
                if let e = s.routing.failure { return fail(coord, e, phase: phase, completion: completion, inFlight: inFlight) }
            }
        }
        return nil
    }

    /// Ends a failed tick on the coordinator lane: answers early when a phase timed out (the
    /// stragglers may run for long), rolls the in-process shards back when every shard kept a
    /// rollback point, and says which remote shards still need to roll back.
    private func fail(_ coord: CoordinatorContext<TickEngine, Void>, _ error: RunnerError, phase: Phase,
                      completion: SegmentCompletion, inFlight: InFlight, timedOut: Bool = false) -> SegmentFailure {
        var failure = SegmentFailure(error: error, tick: tick)
        var timedOut = timedOut
        failure.lost = slots.filter(\.lost).map(\.id)
        if timedOut, case .respawn = configuration.recovery {
            // Under a respawn policy, remote shards that miss the phase timeout are taken for
            // lost (their host may be gone): their connections are closed and new servers
            // started, instead of waiting for them.
            let missing = gate.missing
            let remote = Set(remoteSlots.map(\.id))
            if !missing.isEmpty, missing.allSatisfy({ remote.contains($0) }) {
                for id in missing { if let p = positionOfID[id] { slots[p].lost = true } }
                failure.lost = missing
                timedOut = false
            }
        }
        failure.timedOut = timedOut
        if timedOut {
            inFlight.markBusy(gate.stillRunning)
            completion.resolve(failure: failure)
        }
        gate.reset()
        // Remote outcomes of a failed round still tell which servers kept a rollback point.
        if !remoteSlots.isEmpty { takeRemoteOutcomes(phase) }
        failure.rollbackPossible = saveRollbackPoint && failure.lost.isEmpty && rollbackAvailable
            && !slots.contains { $0.local != nil && $0.savedSnapshot == nil }
            && !slots.contains { $0.remote != nil && !$0.remoteRollbackPoint }
        if failure.rollbackPossible {
            runOnLanes(coord, .rollback)
            let broken = localSlots.first { if case .failure = $0.result { return true } else { return false } }
            if let broken, case .failure(let f) = broken.result {
                failure.rollbackPossible = false
                failure.error = .snapshotFailed(shard: broken.id, operation: "rollback after \(error)", reason: f.reason)
            } else {
                for s in remoteSlots {
                    if let g = s.savedGhosts { s.ghosts.cache.withLock { $0 = g } }
                }
                failure.localRolledBack = true
                failure.remoteRollbacks = remoteSlots.map(\.id)
            }
        }
        for s in slots { s.routing.reset(targets: slots.count) }
        logger.warning("tick failed", metadata: ["tick": "\(tick)", "error": "\(error)"])
        return failure
    }
}
