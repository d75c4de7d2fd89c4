import SpindleKernel

// Checkpoints, restore, and recovery of lost remote shards.
extension DistributedRunner {
    /// Writes a checkpoint of the current tick into `directory`: one file per shard (its
    /// snapshot and ghost cache) and a manifest, each written, fsynced and renamed into place,
    /// so a crash part-way leaves the previous checkpoint in the directory intact and loadable.
    /// - Returns: the manifest written.
    /// - Throws: `RunnerError.snapshotUnsupported` / `.snapshotFailed` naming the shard,
    ///   `.checkpointFailed` naming the path, `.remoteTimedOut`, `.shardsBusy`.
    @discardableResult
    public func checkpoint(to directory: String) async throws(RunnerError) -> CheckpointManifest {
        try await exclusive { () async throws(RunnerError) -> CheckpointManifest in
            try await self.awaitIdle()
            return try await self.writeCheckpoint(to: directory)
        }
    }

    /// A runner restored from the checkpoint in `directory`: `members` are fresh shards (in
    /// this process or shard servers) with the checkpoint's ids; each is restored from its
    /// file, the coordinator's tick is set to the checkpoint's, and the next tick continues as
    /// the checkpointed run would have. Without a placement in `configuration`, the
    /// checkpoint's placement is set on the coordinator.
    /// - Throws: `RunnerError.checkpointCorrupt` naming the file, `.checkpointMismatch` (other
    ///   shards or placement), `.snapshotFailed` naming the shard, and the runner's own errors.
    public static func restore(from directory: String, coordinator: Coordinator, members: [ShardMember],
                               configuration: RunnerConfiguration = RunnerConfiguration()) async throws(RunnerError)
        -> DistributedRunner
    {
        if configuration.placement == nil {
            let (manifest, _) = try CheckpointStore.read(from: directory)
            coordinator.usePlacement(manifest.placement)
        }
        let runner = try DistributedRunner(coordinator: coordinator, members: members, configuration: configuration)
        try await runner.exclusive { () async throws(RunnerError) in
            try await runner.restoreCheckpoint(from: directory)
        }
        return runner
    }

    /// A runner over in-process shards restored from the checkpoint in `directory`.
    public static func restore(from directory: String, coordinator: Coordinator, shards: [any Shard],
                               configuration: RunnerConfiguration = RunnerConfiguration()) async throws(RunnerError)
        -> DistributedRunner
    {
        try await restore(from: directory, coordinator: coordinator, members: shards.map { .local($0) },
                          configuration: configuration)
    }

    // MARK: Inside operations

    func writeCheckpoint(to directory: String) async throws(RunnerError) -> CheckpointManifest {
        engine.flushPendingInstalls()
        try await onLanes(.snapshot)
        var shards: [(checkpoint: ShardCheckpoint, digest: UInt64)] = []
        let tick = coordinator.currentTick
        for slot in engine.slots {
            let snapshot: [UInt8]
            let digest: UInt64
            switch slot.member {
            case .local:
                if let e = slot.transferError { throw e }
                snapshot = slot.transfer
                digest = slot.snapshotDigest
                slot.transfer = []
            case .remote(let r):
                snapshot = try await r.snapshot(stamp: coordinator.hlc.tick(), timeout: configuration.remoteCallTimeout)
                digest = try await r.stateDigest(stamp: coordinator.hlc.tick(), timeout: configuration.remoteCallTimeout)
            }
            let ghosts = slot.ghosts.cache.withLock { $0.nodesByRecency }
            shards.append((ShardCheckpoint(shard: slot.id, tick: tick, snapshot: snapshot, ghosts: ghosts), digest))
        }
        let collectives: [CheckpointManifest.Collective]
        do {
            collectives = try engine.collectives.encodedAll(with: engine.registry)
                .sorted { $0.key < $1.key }.map { CheckpointManifest.Collective(name: $0.key, value: $0.value) }
        } catch {
            throw .checkpointFailed(path: directory, reason: "the collective results do not encode: \(error)")
        }
        let manifest = try CheckpointStore.write(to: directory, tick: tick, placement: engine.placement.strategy,
                                                 shards: shards, collectives: collectives, faults: checkpointFaults)
        noteCheckpoint(directory: directory, tick: tick)
        configuration.logger.info("checkpoint written", metadata: ["tick": "\(tick)", "directory": "\(directory)"])
        return manifest
    }

    /// Puts every shard back to the checkpoint in `directory`.
    func restoreCheckpoint(from directory: String) async throws(RunnerError) {
        let (manifest, files) = try CheckpointStore.read(from: directory)
        guard manifest.shardIDs == engine.ids else {
            throw .checkpointMismatch("it holds shards \(manifest.shardIDs.map(\.description)); the runner runs \(engine.ids.map(\.description))")
        }
        guard manifest.placement == engine.placement.strategy else {
            throw .checkpointMismatch("it was placed by \(manifest.placement); the runner places by \(engine.placement.strategy)")
        }
        for (slot, file) in zip(engine.slots, files) where slot.local != nil { slot.transfer = file.snapshot }
        try await onLanes(.restore)
        for slot in engine.localSlots {
            if let e = slot.transferError { throw e }
        }
        for (slot, file) in zip(engine.slots, files) {
            if let r = slot.remote {
                try await r.restore(file.snapshot, stamp: coordinator.hlc.tick(), timeout: configuration.remoteCallTimeout)
            }
            var cache = GhostCache(capacity: configuration.ghostCacheCapacity)
            for g in file.ghosts { cache.insert(g) }
            slot.ghosts.cache.withLock { $0 = cache }
            if slot.remote != nil {
                engine.pendingGhostOps[slot.id] = [.clear] + file.ghosts.map { .install($0) }
            }
            slot.pendingInstalls = []
            slot.exports = [:]
            slot.savedSnapshot = nil
            slot.savedGhosts = nil
            slot.routing.reset(targets: engine.slots.count)
        }
        var results = CollectiveResults()
        for c in manifest.collectives { results.encoded[c.name] = c.value }
        engine.collectives = results
        coordinator.rewind(to: manifest.tick)
        noteCheckpoint(directory: directory, tick: manifest.tick)
        configuration.logger.info("restored from checkpoint", metadata: ["tick": "\(manifest.tick)", "directory": "\(directory)"])
    }

    func restoreLastCheckpoint() async throws(RunnerError) {
        guard let last = lastCheckpointLocation else {
            throw .checkpointFailed(path: "-", reason: "no checkpoint was written or restored yet")
        }
        try await restoreCheckpoint(from: last.directory)
    }

    /// Starts new servers for lost remote shards (through the launcher), then restores every
    /// shard from the last checkpoint.
    func recover(_ lost: [ShardID], cause: RunnerError) async throws(RunnerError) {
        guard let launcher = configuration.launcher, case .respawn(let attempts) = configuration.recovery else {
            throw cause
        }
        let tick: UInt64 = {
            if case .shardLost(_, let t, _) = cause.rootCause { return t }
            return coordinator.currentTick + 1
        }()
        for id in lost {
            guard let p = engine.position(of: id), let old = engine.slots[p].remote else {
                throw .recoveryFailed(shard: id, tick: tick, reason: "it is not a remote shard of this runner", cause: cause)
            }
            old.detach()
            old.stop()
            var problem = "the launcher was not called"
            var replaced = false
            for attempt in 1...attempts {
                configuration.logger.warning("respawning a lost shard",
                                             metadata: ["shard": "\(id)", "attempt": "\(attempt)", "cause": "\(cause)"])
                do {
                    let fresh = try await withTimeout(configuration.respawnTimeout) { try await launcher(id, attempt) }
                    guard fresh.id == id else {
                        problem = "the launcher returned \(fresh.id)"
                        fresh.stop()
                        continue
                    }
                    engine.replaceRemote(id, with: fresh)
                    engine.metrics.respawns.increment()
                    replaced = true
                    break
                } catch {
                    problem = "attempt \(attempt): \(error)"
                }
            }
            guard replaced else {
                throw .recoveryFailed(shard: id, tick: tick, reason: "no new server: \(problem)", cause: cause)
            }
        }
        do {
            try await restoreLastCheckpoint()
        } catch {
            throw .recoveryFailed(shard: lost[0], tick: tick, reason: "restoring the checkpoint failed: \(error)", cause: cause)
        }
    }
}

/// Runs `body`, giving up after `limit` (the body is cancelled; it should honour cancellation).
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw RunnerError.remoteFailure(shard: nil, reason: "timed out after \(limit)")
        }
        return value
    }
}
