import SpindleKernel

// Routing of what Act emitted (per target, batched), deliveries, ghost requests and installs,
// remote requests and answers, collectives, and the tick's result.
extension TickEngine {
    /// The slot position of the shard owning `key` (nil: no owner, or not run here).
    func slotPosition(owning key: NodeKey) -> Int? {
        guard let p = placement.position(of: key) else { return nil }
        let s = placementToSlot[p]
        return s >= 0 ? s : nil
    }

    /// Groups one shard's Act output per target shard (one batch per target, no per-edge
    /// hand-off), touches its ghost cache for every edge that crosses, and notes the misses
    /// to fetch. Runs where the shard's Act ran (a lane, or the coordinator lane for a remote
    /// shard).
    func route(edges: [ActOutput.PendingEdge], messages: [(to: ShardID, payload: [UInt8])], from slot: ShardSlot) {
        let n = slots.count
        if edges.isEmpty && messages.isEmpty && slot.routing.isEmpty && slot.routing.edgesTo.count == n {
            slot.routing.reset(targets: n)   // nothing to clear: only the counters
            return
        }
        var r = ActRouting()
        swap(&r, &slot.routing)
        defer { swap(&r, &slot.routing) }
        r.reset(targets: n)
        r.edgeCount = edges.count
        r.messageCount = messages.count
        guard !edges.isEmpty || !messages.isEmpty else { return }
        r.isEmpty = false
        let me = slot.position
        let resolve = configuration.ghostResolution && slot.readsGhosts
        if !edges.isEmpty {
            var misses: [NodeKey] = []
            var hits = 0
            var failure: RunnerError? = nil
            slot.ghosts.cache.withLock { cache in
                for e in edges {
                    guard let d = slotPosition(owning: e.target) else {
                        failure = .unknownTarget(target: "owner of \(e.target)", emittedBy: slot.id, tick: tick)
                        return
                    }
                    r.edgesTo[d].append(CrossShardEdge(source: e.source, target: e.target, sourceShard: slot.id,
                                                       targetShard: ids[d], weight: e.weight))
                    if resolve && d != me {
                        if cache.touch(e.target) != nil { hits += 1 } else { misses.append(e.target) }
                    }
                }
            }
            if let failure {
                r.failure = failure
                return
            }
            r.ghostHits = hits
            r.ghostMisses = misses.count
            if !misses.isEmpty {
                // Installing more distinct keys than the cache holds would only evict the
                // earlier ones again: fetch the last `capacity` distinct misses.
                var seen = KeyTable(minimumCapacity: misses.count)
                var order: [NodeKey] = []
                order.reserveCapacity(misses.count)
                for k in misses where seen.insert(k.rawValue) { order.append(k) }
                let capacity = slot.ghosts.capacity
                if order.count > capacity { order.removeFirst(order.count - capacity) }
                for k in order {
                    if let d = slotPosition(owning: k) { r.missesFor[d].append(k) }
                }
                r.installOrder = order
            }
        }
        for m in messages {
            guard let d = position(of: m.to) else {
                r.failure = .unknownTarget(target: "\(m.to)", emittedBy: slot.id, tick: tick)
                return
            }
            r.messagesTo[d].append(ShardMessage(from: slot.id, to: m.to, payload: m.payload))
        }
    }

    /// What the tick's Act emitted for the shard at `position`: by emitting shard, then emission order.
    func delivery(for position: Int) -> ShardDelivery {
        var edges = CrossShardEdges()
        var messages: [ShardMessage] = []
        for s in slots where !s.routing.isEmpty && position < s.routing.edgesTo.count {
            edges.append(batch: s.routing.edgesTo[position])
            let m = s.routing.messagesTo[position]
            if !m.isEmpty { messages.append(contentsOf: m) }
        }
        return ShardDelivery(edges: edges, messages: messages)
    }

    /// The keys other shards missed in their ghost caches that the shard at `position` owns.
    func ghostRequests(for position: Int) -> [NodeKey] {
        var keys: [NodeKey] = []
        var lists = 0
        for s in slots where !s.routing.isEmpty && position < s.routing.missesFor.count && !s.routing.missesFor[position].isEmpty {
            lists += 1
            keys.append(contentsOf: s.routing.missesFor[position])
        }
        guard lists > 1 else { return keys }
        var seen = KeyTable(minimumCapacity: keys.count)
        return keys.filter { seen.insert($0.rawValue) }
    }

    /// Installs the ghosts a shard missed in the last completed tick (exported by their owners
    /// in that tick's Decay) into its cache, in miss order.
    /// - Returns: the changes, for a remote shard's mirror.
    @discardableResult
    func installPending(_ slot: ShardSlot) -> [GhostOp] {
        guard !slot.pendingInstalls.isEmpty else { return [] }
        let keys = slot.pendingInstalls
        slot.pendingInstalls = []
        let mirror = slot.remote != nil
        var ops: [GhostOp] = []
        slot.ghosts.cache.withLock { cache in
            for k in keys {
                guard let o = slotPosition(owning: k), let g = slots[o].exports[k] else { continue }
                let evicted = cache.insert(g)
                if mirror {
                    ops.append(.install(g))
                    if let e = evicted { ops.append(.remove(e)) }
                }
            }
        }
        return ops
    }

    /// Keeps a copy of a shard's ghost cache as the rollback point (unless it did not change
    /// since the last copy).
    func saveGhosts(_ slot: ShardSlot) {
        slot.ghosts.cache.withLock { cache in
            guard slot.savedGhosts == nil || cache.mutations != slot.savedGhostsVersion else { return }
            slot.savedGhosts = cache
            slot.savedGhostsVersion = cache.mutations
        }
    }

    /// Installs every shard's pending ghosts now (before a checkpoint or a look at a cache).
    func flushPendingInstalls() {
        for s in slots {
            let ops = installPending(s)
            if !ops.isEmpty { pendingGhostOps[s.id, default: []].append(contentsOf: ops) }
        }
    }

    /// The requests for the remote shards' servers for `phase` (round ids are filled in later).
    func prepareRemote(_ phase: Phase) -> Result<[PhaseRequest], RunnerError> {
        var encoded: [(name: String, value: [UInt8])] = []
        if phase == .sense && !collectives.isEmpty {
            do {
                encoded = try collectives.encodedAll(with: registry).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            } catch {
                return .failure(.collectiveFailed(collective: collectives.names.joined(separator: ", "),
                                                  shard: remoteSlots[0].id, tick: tick,
                                                  reason: "the results do not encode: \(error)"))
            }
        }
        var requests: [PhaseRequest] = []
        requests.reserveCapacity(remoteSlots.count)
        for slot in remoteSlots {
            var request = PhaseRequest(round: 0, tick: tick, phase: phase, placementShards: placement.shards,
                                       placement: placement.strategy)
            slot.result = .success(0)
            switch phase {
            case .sense:
                let ops = installPending(slot)
                if saveRollbackPoint { saveGhosts(slot) }
                slot.remoteRollbackPoint = false
                request.saveRollbackPoint = saveRollbackPoint
                request.ghostOps = (pendingGhostOps.removeValue(forKey: slot.id) ?? []) + ops
                request.collectives = encoded
            case .act:
                break
            case .decay:
                request.delivery = delivery(for: slot.position)
                request.ghostRequests = ghostRequests(for: slot.position)
                slot.remoteContributions = []
            }
            requests.append(request)
        }
        return .success(requests)
    }

    /// Moves the remote shards' answers of the last round into their slots; routes what their
    /// Act emitted.
    func takeRemoteOutcomes(_ phase: Phase) {
        let arrivals = gate.takeRemoteArrivals()
        for slot in remoteSlots {
            guard let a = arrivals[slot.id] else { continue }
            slot.lost = a.lost
            slot.setStamp(a.stamp, for: phase)
            switch a.result {
            case .failure(let f):
                slot.result = .failure(f)
                slot.setDuration(a.duration, processed: 0, for: phase)
            case .success(let work):
                slot.result = .success(work.processed)
                slot.setDuration(a.duration, processed: work.processed, for: phase)
                switch phase {
                case .sense:
                    slot.remoteRollbackPoint = a.rollbackPointSaved
                    if saveRollbackPoint && !a.rollbackPointSaved { slot.snapshots = .unsupported }
                    if a.rollbackPointSaved { slot.snapshots = .supported }
                case .act:
                    route(edges: work.edges, messages: work.messages, from: slot)
                case .decay:
                    slot.exports = Dictionary(work.ghosts.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
                    slot.remoteContributions = work.contributions
                }
            }
        }
    }

    /// Folds every shard's contributions, in shard-id order, per collective.
    func combineCollectives() -> Result<CollectiveResults, RunnerError> {
        var results = CollectiveResults()
        for slot in slots where !(slot.sink.isEmpty && slot.remoteContributions.isEmpty) {
            if slot.local != nil {
                if let conflict = slot.sink.conflict {
                    return .failure(.collectiveFailed(collective: "?", shard: slot.id, tick: tick, reason: conflict))
                }
                for e in slot.sink.entries {
                    guard let c = registry[e.name] else {
                        return .failure(.collectiveFailed(collective: e.name, shard: slot.id, tick: tick,
                                                          reason: "not registered in RunnerConfiguration.collectives"))
                    }
                    guard c.typeID == e.typeID else {
                        return .failure(.collectiveFailed(collective: e.name, shard: slot.id, tick: tick,
                                                          reason: "the value is not a \(c.valueType)"))
                    }
                    guard fold(e.value, into: &results, with: c) else {
                        return .failure(.collectiveFailed(collective: e.name, shard: slot.id, tick: tick,
                                                          reason: "the value is not a \(c.valueType)"))
                    }
                }
            } else {
                for (name, bytes) in slot.remoteContributions {
                    guard let c = registry[name] else {
                        return .failure(.collectiveFailed(collective: name, shard: slot.id, tick: tick,
                                                          reason: "not registered in RunnerConfiguration.collectives"))
                    }
                    let value: any Sendable
                    do { value = try c.decode(bytes) } catch {
                        return .failure(.collectiveFailed(collective: name, shard: slot.id, tick: tick,
                                                          reason: "the value does not decode as \(c.valueType): \(error)"))
                    }
                    _ = fold(value, into: &results, with: c)
                }
            }
        }
        return .success(results)
    }

    private func fold(_ value: any Sendable, into results: inout CollectiveResults, with c: AnyCollective) -> Bool {
        guard let previous = results.values[c.name] else {
            results.values[c.name] = value
            return true
        }
        guard let combined = c.combine(previous, value) else { return false }
        results.values[c.name] = combined
        return true
    }

    /// The completed tick's result.
    func tickResult(started: MonotonicInstant, collectives: CollectiveResults) -> TickResult {
        var shards: [ShardTickResult] = []
        shards.reserveCapacity(slots.count)
        var messageCount = 0, hits = 0, misses = 0
        for s in slots {
            shards.append(ShardTickResult(
                shard: s.id,
                sense: PhaseResult(phase: .sense, duration: s.durations.0, processed: s.processed.0,
                                   edgesEmitted: 0, messagesEmitted: 0, stamp: s.stamps.0),
                act: PhaseResult(phase: .act, duration: s.durations.1, processed: s.processed.1,
                                 edgesEmitted: s.routing.edgeCount, messagesEmitted: s.routing.messageCount,
                                 stamp: s.stamps.1),
                decay: PhaseResult(phase: .decay, duration: s.durations.2, processed: s.processed.2,
                                   edgesEmitted: 0, messagesEmitted: 0, stamp: s.stamps.2)))
            messageCount += s.routing.messageCount
            hits += s.routing.ghostHits
            misses += s.routing.ghostMisses
        }
        var edges = CrossShardEdges()
        if slots.contains(where: { !$0.routing.isEmpty }) {
            for d in slots.indices {
                for s in slots where !s.routing.isEmpty && d < s.routing.edgesTo.count { edges.append(batch: s.routing.edgesTo[d]) }
            }
        }
        return TickResult(tick: tick, shards: shards, crossShardEdges: edges, messageCount: messageCount,
                          ghostHits: hits, ghostMisses: misses, duration: now - started,
                          stamp: coordinator.hlc.tick(), collectives: collectives)
    }
}
