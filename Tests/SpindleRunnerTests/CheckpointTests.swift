import SpindleKernel
import SpindleSupport
import Synchronization
import Testing
@testable import SpindleRunner

#if canImport(Glibc)
import Glibc
#endif

/// Checkpoints: atomic files and manifest, restore into fresh shards (in this process or in
/// shard servers), and continuing from them exactly as the uninterrupted run.
@Suite("Checkpoints")
struct CheckpointTests {
    static let colony = ColonyConfiguration(seed: 0xCAFE, nodeCount: 280, agentCount: 96)

    func makeRunner(_ n: Int, _ placement: PlacementStrategy = .consistentHashing,
                    _ configure: (inout RunnerConfiguration) -> Void = { _ in }) throws -> DistributedRunner {
        let coordinator = Coordinator()
        let shards = try colonyShards(n, Self.colony, placement, coordinator: coordinator)
        var configuration = RunnerConfiguration(phaseTimeout: .seconds(30), placement: placement)
        configuration.ghostCacheCapacity = 16
        configure(&configuration)
        return try DistributedRunner(coordinator: coordinator, shards: shards, configuration: configuration)
    }

    @Test("checkpoint → restore into fresh shards → continue equals the uninterrupted run", arguments: [1, 3, 4])
    func restoreAndContinue(shards n: Int) async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 20)
        try await withTemporaryDirectory { dir in
            let first = try makeRunner(n, Self.colony.localityPlacement)
            _ = try await first.run(8)
            let manifest = try await first.checkpoint(to: dir)
            let atCheckpoint = try await first.stateDigest()
            let uninterruptedGhosts = try #require(await first.ghostCache(of: ShardID(1))).keysByRecency
            await first.shutdown()
            #expect(manifest.tick == 8 && manifest.shardIDs == (1...UInt64(n)).map { ShardID($0) })
            #expect(manifest.digest == atCheckpoint)
            #expect(manifest.placement == Self.colony.localityPlacement)

            // Fresh shards (initial state), restored from the files.
            let coordinator = Coordinator()
            let fresh = try colonyShards(n, Self.colony, Self.colony.localityPlacement, coordinator: coordinator)
            var configuration = RunnerConfiguration()
            configuration.ghostCacheCapacity = 16
            let restored = try await DistributedRunner.restore(from: dir, coordinator: coordinator, shards: fresh,
                                                               configuration: configuration)
            #expect(coordinator.currentTick == 8)
            #expect(try await restored.stateDigest() == atCheckpoint)
            #expect(await restored.ghostCache(of: ShardID(1))?.keysByRecency == uninterruptedGhosts)
            let rest = try await restored.run(12)
            #expect(rest.map(\.tick) == Array(9...20))
            #expect(try await restored.stateDigest() == reference)
            await restored.shutdown()
        }
    }

    @Test("remote shards are checkpointed and restored through their servers")
    func remoteRestore() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 14)
        try await withTemporaryDirectory { dir in
            // Checkpoint at tick 6 from shard servers…
            let c1 = Coordinator()
            let s1 = try colonyShards(3, Self.colony, .consistentHashing, coordinator: c1)
            let t1 = InProcessTransport()
            let digest6 = try await withShardHosts(s1, transport: t1, address: .inproc(name: "ckpt-a"), coordinator: c1) { _, remotes in
                let runner = try DistributedRunner(coordinator: c1, members: remotes.map { .remote($0) })
                _ = try await runner.run(6)
                try await runner.checkpoint(to: dir)
                let d = try await runner.stateDigest()
                await runner.shutdown()
                return d
            }
            await t1.shutdown()
            // …restored into new servers of fresh shards, and continued.
            let c2 = Coordinator()
            let s2 = try colonyShards(3, Self.colony, .consistentHashing, coordinator: c2)
            let t2 = InProcessTransport()
            let final = try await withShardHosts(s2, transport: t2, address: .inproc(name: "ckpt-b"), coordinator: c2) { _, remotes in
                let runner = try await DistributedRunner.restore(from: dir, coordinator: c2, members: remotes.map { .remote($0) })
                #expect(try await runner.stateDigest() == digest6)
                _ = try await runner.run(8)
                let d = try await runner.stateDigest()
                await runner.shutdown()
                return d
            }
            await t2.shutdown()
            #expect(final == reference)
        }
    }

    @Test("a crash mid-checkpoint (one shard file's write fails) leaves the previous checkpoint loadable")
    func crashMidCheckpoint() async throws {
        let reference = try await referenceDigest(Self.colony, ticks: 15)
        try await withTemporaryDirectory { dir in
            let runner = try makeRunner(3)
            _ = try await runner.run(5)
            let good = try await runner.checkpoint(to: dir)
            _ = try await runner.run(4)
            runner.checkpointFaults.failWrite(of: "shard-2.snap")
            do {
                try await runner.checkpoint(to: dir)
                Issue.record("the checkpoint did not fail")
            } catch let error as RunnerError {
                guard case .checkpointFailed(let path, let reason) = error else {
                    Issue.record("unexpected \(error)")
                    return
                }
                #expect(path.hasSuffix("/shard-2.snap") && reason.contains("write failed"), "\(error)")
            }
            await runner.shutdown()
            // What is on disk is the tick-5 checkpoint, whole; no partial directory is left.
            let (manifest, files) = try CheckpointStore.read(from: dir)
            #expect(manifest == good && files.count == 3)
            let entries = CheckpointStore.listDirectory(dir).sorted()
            #expect(entries == ["manifest", good.directory], "\(entries)")
            let coordinator = Coordinator()
            let fresh = try colonyShards(3, Self.colony, .consistentHashing, coordinator: coordinator)
            let restored = try await DistributedRunner.restore(from: dir, coordinator: coordinator, shards: fresh)
            _ = try await restored.run(10)
            #expect(try await restored.stateDigest() == reference)
            await restored.shutdown()
        }
    }

    @Test("a crash while the manifest is written leaves the previous checkpoint current")
    func crashWritingManifest() async throws {
        try await withTemporaryDirectory { dir in
            let runner = try makeRunner(2)
            _ = try await runner.run(3)
            let good = try await runner.checkpoint(to: dir)
            _ = try await runner.run(2)
            runner.checkpointFaults.failWrite(of: "manifest")
            await #expect(throws: RunnerError.self) { try await runner.checkpoint(to: dir) }
            await runner.shutdown()
            #expect(try CheckpointStore.read(from: dir).0 == good)
        }
    }

    @Test("damaged checkpoints are typed errors naming the file")
    func corruptFiles() async throws {
        try await withTemporaryDirectory { dir in
            let runner = try makeRunner(2)
            _ = try await runner.run(3)
            let manifest = try await runner.checkpoint(to: dir)
            await runner.shutdown()
            let shardFile = dir + "/" + manifest.directory + "/" + manifest.shards[1].file
            let original = try CheckpointStore.readFile(shardFile)
            func restore() async throws(RunnerError) {
                let coordinator = Coordinator()
                let fresh = try ColonyShard.makeShards(count: 2, configuration: Self.colony, coordinator: coordinator)
                let r = try await DistributedRunner.restore(from: dir, coordinator: coordinator, shards: fresh)
                await r.shutdown()
            }
            // A flipped byte in a shard file.
            var flipped = original
            flipped[flipped.count / 2] ^= 0x40
            try write(flipped, to: shardFile)
            await #expect { try await restore() } throws: { error in
                guard case .checkpointCorrupt(let file, _) = error as? RunnerError else { return false }
                return file == shardFile
            }
            // A truncated shard file.
            try write(Array(original.prefix(10)), to: shardFile)
            await #expect { try await restore() } throws: { error in
                guard case .checkpointCorrupt(let file, _) = error as? RunnerError else { return false }
                return file == shardFile
            }
            try write(original, to: shardFile)
            // A truncated manifest.
            let manifestFile = dir + "/manifest"
            let text = try CheckpointStore.readFile(manifestFile)
            try write(Array(text.prefix(text.count - 5)), to: manifestFile)
            await #expect { try await restore() } throws: { error in
                guard case .checkpointCorrupt(let file, _) = error as? RunnerError else { return false }
                return file == manifestFile
            }
            // Random garbage decodes to a typed error, never a crash.
            var rng = SplitMix64(seed: 3)
            for _ in 0..<300 {
                var bytes = original
                for _ in 0..<(1 + Int(rng.next() % 3)) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
                _ = try? ShardCheckpoint.decode(bytes, file: "x")
                var m = text
                m[Int(rng.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: rng.next())
                _ = try? CheckpointManifest.decode(m, file: "m")
            }
            // Restoring into other shards is a mismatch, not a crash.
            try write(text, to: manifestFile)
            let coordinator = Coordinator()
            let three = try ColonyShard.makeShards(count: 3, configuration: Self.colony, coordinator: coordinator)
            await #expect { _ = try await DistributedRunner.restore(from: dir, coordinator: coordinator, shards: three) } throws: { error in
                guard case .checkpointMismatch = error as? RunnerError else { return false }
                return true
            }
            // A snapshot of another colony is refused by the shard, naming it.
            let other = ColonyShard(id: ShardID(1), configuration: ColonyConfiguration(seed: 1, nodeCount: 280, agentCount: 96),
                                    placement: ShardPlacement(shards: [ShardID(1), ShardID(2)]))
            #expect(throws: ColonyError.self) { try other.restore(try CheckpointStore.read(from: dir).1[0].snapshot) }
        }
    }

    @Test("checkpointEvery writes checkpoints at tick 0 and every n ticks on its own")
    func automaticCheckpoints() async throws {
        try await withTemporaryDirectory { dir in
            let runner = try makeRunner(2) {
                $0.checkpointEvery = 4
                $0.checkpointDirectory = dir + "/auto"
            }
            _ = try await runner.run(2)
            #expect(try CheckpointStore.read(from: dir + "/auto").0.tick == 0)
            let results = try await runner.run(9)
            #expect(results.map(\.tick) == Array(3...11))
            #expect(try CheckpointStore.read(from: dir + "/auto").0.tick == 8)
            #expect(runner.lastCheckpointLocation?.tick == 8)
            await runner.shutdown()
        }
    }

    @Test("a shard without snapshots cannot be checkpointed: the error names it")
    func unsupported() async throws {
        try await withTemporaryDirectory { dir in
            let runner = try DistributedRunner(coordinator: Coordinator(), shards: [IdleShard(id: ShardID(1)), TestShard(2)])
            _ = try await runner.tick()
            await #expect(throws: RunnerError.snapshotUnsupported(shard: ShardID(2))) { try await runner.checkpoint(to: dir) }
            await runner.shutdown()
            #expect(CheckpointStore.listDirectory(dir).filter { !$0.hasPrefix(".") }.isEmpty || !CheckpointStore.listDirectory(dir).contains("manifest"))
        }
    }

    @Test("the manifest round-trips and its checksum catches any change")
    func manifestText() throws {
        let m = CheckpointManifest(tick: 7, placement: .ranges(keyCount: 99), shards: [
            .init(shard: ShardID(1), file: "shard-1.snap", bytes: 10, checksum: 0xABC, digest: 1),
            .init(shard: ShardID(4), file: "shard-4.snap", bytes: 0, checksum: 2, digest: .max),
        ], collectives: [.init(name: "a b", value: [0, 255]), .init(name: "empty", value: [])], directory: "tick-7-x")
        let text = Array(m.encode().utf8)
        #expect(try CheckpointManifest.decode(text, file: "m") == m)
        for i in 0..<(text.count - 1) {
            var changed = text
            changed[i] = changed[i] == UInt8(ascii: "1") ? UInt8(ascii: "2") : UInt8(ascii: "1")
            #expect(throws: RunnerError.self) { try CheckpointManifest.decode(changed, file: "m") }
        }
    }
}

func write(_ bytes: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw Injected(what: "cannot open \(path)") }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    guard n == bytes.count else { throw Injected(what: "short write to \(path)") }
}
