import SpindleEventLoop
import SpindleHostMesh
import SpindleKernel
import SpindleRunner
import Synchronization
import Testing

/// A colony whose shards run as `spindle-shard` procs on the namespace hosts, spawned through a
/// host mesh attached from the root namespace, and coordinated from here: the shards dial the
/// coordinator's listener at the root namespace's bridge address (or a proxy in front of it).
///
///     root namespace (10.77.0.254)                    spn1 … spnN
///     DistributedRunner ── ShardServerListener ◀──── spindle-shard × perHost (kept by the agent)
///     HostMesh ──────────────────────────────────▶── spindle host-agent --key-file
struct RemoteColony {
    let mesh: HostMesh
    let procs: ProcMesh
    let listener: ShardServerListener
    let runner: DistributedRunner

    static let configuration = ColonyConfiguration(seed: 0xC1, nodeCount: 256, agentCount: 64)
    static let arguments = ["--seed", "\(0xC1)", "--nodes", "256", "--agents", "64"]

    /// The digest after `ticks` ticks of the same colony in one in-process shard.
    static func localDigest(ticks: Int) async throws -> UInt64 {
        let coordinator = Coordinator()
        let shards = try ColonyShard.makeShards(count: 1, configuration: configuration, coordinator: coordinator)
        let runner = try DistributedRunner(coordinator: coordinator, shards: shards,
                                           configuration: RunnerConfiguration(parallelism: 1))
        _ = try await runner.run(ticks)
        let digest = try await runner.stateDigest()
        await runner.shutdown()
        return digest
    }

    /// The shards served by the procs on `host`: rank r serves shard r + 1.
    func shards(on host: Address) -> Set<ShardID> {
        Set((0..<procs.count).filter { procs.host(ofRank: $0) == host }.map { ShardID(UInt64($0 + 1)) })
    }

    /// Attaches a mesh to the agents, spawns `perHost` shard servers on each host, waits for
    /// every one to say hello, and runs `body` with the runner over them; then stops the
    /// runner, the servers and the mesh, whatever happened. `coordinatorAddress` maps the
    /// listener's address to the one shard servers dial (a proxy in front of it).
    static func with<R>(_ nodes: NamespaceAgents, perHost: Int = 2, name: String,
                        meshConfiguration: HostMesh.Configuration = HostMesh.Configuration(),
                        runnerConfiguration: RunnerConfiguration = RunnerConfiguration(),
                        coordinatorAddress: (Address) async throws -> Address = { $0 },
                        _ body: (RemoteColony) async throws -> R) async throws -> R {
        let shardServer = try TestCluster.product("spindle-shard")
        let coordinator = Coordinator()
        let count = perHost * nodes.addresses.count
        let listener = try await ShardServerListener.listen(
            on: .tcp(host: TestCluster.rootAddress, port: 0), transport: nodes.transport, hlc: coordinator.hlc,
            expecting: Set((1...count).map { ShardID(UInt64($0)) }))
        var mesh: HostMesh? = nil
        var procs: ProcMesh? = nil
        var runner: DistributedRunner? = nil
        func cleanUp() async {
            await runner?.shutdown()
            listener.shutdown()
            try? await procs?.stop()
            await mesh?.shutdown()
        }
        do {
            let dial = try await coordinatorAddress(listener.address)
            let m = try await HostMesh.attach(name: name, hosts: nodes.addresses, config: ConfigSnapshot(["model": "colony"]),
                                              timeout: .seconds(60), transport: nodes.transport, configuration: meshConfiguration)
            mesh = m
            // The agents pass SPINDLE_KEY_FILE, SPINDLE_RANK and SPINDLE_WORLD_SIZE: the
            // servers authenticate with the cluster key and serve shard rank + 1 of `count`.
            let p = try await m.spawnProcs(name: "\(name)-shards", perHost: perHost) { _ in
                BootstrapCommand(program: shardServer, arguments: ["--coordinator", "\(dial)"] + arguments)
            }
            procs = p
            let remotes = try await listener.waitForShards(count: count, timeout: .seconds(60))
            #expect(remotes.map(\.id) == (1...count).map { ShardID(UInt64($0)) })
            let r = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) },
                                          configuration: runnerConfiguration)
            runner = r
            let result = try await body(RemoteColony(mesh: m, procs: p, listener: listener, runner: r))
            await cleanUp()
            return result
        } catch {
            await cleanUp()
            throw error
        }
    }

    /// Runs `ticks` ticks and returns the state digest.
    func digest(after ticks: Int) async throws -> UInt64 {
        let results = try await runner.run(ticks)
        #expect(results.map(\.tick) == (1...ticks).map { UInt64($0) })
        return try await runner.stateDigest()
    }
}

extension RunnerError {
    /// The shards a failure names (the one behind rollback and recovery wrappers).
    var namedShards: Set<ShardID> {
        switch rootCause {
        case .phaseTimedOut(_, _, let missing, _, _): return Set(missing)
        case .shardFailed(let shard, _, _, _), .shardLost(let shard, _, _), .remoteTimedOut(let shard, _, _),
             .snapshotFailed(let shard, _, _):
            return [shard]
        case .remoteFailure(let shard?, _): return [shard]
        default: return []
        }
    }
}

extension ClusterTests {
    @Test("the remote runner: colony shards as procs on 3 hosts give the 1-in-process-shard digest")
    func remoteRunnerAcrossHosts() async throws {
        let ticks = 20
        let expected = try await RemoteColony.localDigest(ticks: ticks)
        try await withScratchDirectory { dir in
            try await TestCluster.with(3) { cluster in
                try await NamespaceAgents.with(cluster, directory: dir, allow: [try TestCluster.product("spindle-shard")]) { nodes in
                    let digest = try await RemoteColony.with(nodes, name: "colony") { colony in
                        // Two servers per host, each on the host it was placed on.
                        for (i, address) in nodes.addresses.enumerated() {
                            #expect(colony.shards(on: address) == [ShardID(UInt64(2 * i + 1)), ShardID(UInt64(2 * i + 2))])
                            #expect(try cluster.processes(in: cluster.hosts[i]).count == 5,
                                    "\(cluster.hosts[i].name) should run its agent and 2 kept shard servers")
                        }
                        return try await colony.digest(after: ticks)
                    }
                    #expect(digest == expected, "the colony across 3 hosts diverged from one in-process shard")
                    try await nodes.waitUntilOnlyAgentsRun()
                }
                try await waitUntilNoProcessRuns(in: cluster)
            }
        }
    }

    @Test("a host cut off mid-run: the tick fails naming its shards, the mesh reports it lost; healed, a new run is right")
    func remoteRunnerThroughPartition() async throws {
        let ticks = 12
        let expected = try await RemoteColony.localDigest(ticks: ticks)
        try await withScratchDirectory { dir in
            try await TestCluster.with(3) { cluster in
                try await NamespaceAgents.with(cluster, directory: dir, allow: [try TestCluster.product("spindle-shard")]) { nodes in
                    let cut = cluster.hosts[1], cutAddress = nodes.addresses[1]
                    var meshConfiguration = HostMesh.Configuration()
                    meshConfiguration.livenessBound = .seconds(5)
                    // A shard that stops answering fails its phase after 20 s at the latest;
                    // TCP's user timeout (10 s) usually closes its connection first.
                    var runnerConfiguration = RunnerConfiguration(phaseTimeout: .seconds(20))
                    runnerConfiguration.remoteCallTimeout = .seconds(10)
                    try await RemoteColony.with(nodes, name: "cutcolony", meshConfiguration: meshConfiguration,
                                                runnerConfiguration: runnerConfiguration) { colony in
                        let lostShards = colony.shards(on: cutAddress)
                        #expect(lostShards == [ShardID(3), ShardID(4)])
                        let events = colony.mesh.events()
                        // Ticks run back to back; the host is cut while they do.
                        let runner = colony.runner, ticked = TickCount()
                        let ticking = Task { () -> RunnerError? in
                            for _ in 0..<1_000_000 {
                                do throws(RunnerError) { _ = try await runner.tick() } catch { return error }
                                ticked.increment()
                            }
                            return nil
                        }
                        try await waitUntil("5 ticks before the cut") { ticked.value >= 5 }
                        try cluster.cut(cut)
                        let cutAt = SystemClock().now()
                        let failure = try await within(.seconds(60), "a tick to fail after the cut") { await ticking.value }
                        let failedAfter = SystemClock().now() - cutAt
                        let error = try #require(failure, "ticks kept succeeding with \(cut.name) cut off")
                        #expect(!error.namedShards.isEmpty && error.namedShards.isSubset(of: lostShards),
                                "the failure should name shards of \(cut.name) (\(lostShards.sorted())), not others: \(error)")
                        #expect(failedAfter < .seconds(25), "the tick failed only \(failedAfter) after the cut: \(error)")

                        let lost = try await within(.seconds(60), "the mesh to report \(cut.name) lost") { () -> Address? in
                            for await event in events {
                                if case .hostLost(let host, _, _) = event { return host }
                            }
                            return nil
                        }
                        #expect(lost == cutAddress, "the mesh reported \(String(describing: lost)) lost, not \(cutAddress)")
                        // The cut host's agent loses its client too and stops the servers there.
                        try await waitUntil("\(cut.name)'s agent to stop the lost client's shard servers", timeout: .seconds(60)) {
                            (try? cluster.processes(in: cut).count) == 1
                        }
                    }

                    try cluster.heal(cut)
                    let digest = try await RemoteColony.with(nodes, name: "healed") { colony in
                        try await colony.digest(after: ticks)
                    }
                    #expect(digest == expected, "the run after healing diverged from one in-process shard")
                    try await nodes.waitUntilOnlyAgentsRun()
                }
                try await waitUntilNoProcessRuns(in: cluster)
            }
        }
    }

    @Test("with 5% packet loss on every host and 1 ms of added latency, the remote runner's digest is exact")
    func remoteRunnerThroughLossAndLatency() async throws {
        let ticks = 15
        let expected = try await RemoteColony.localDigest(ticks: ticks)
        try await withScratchDirectory { dir in
            try await TestCluster.with(3) { cluster in
                for host in cluster.hosts { try cluster.loss(host, percent: 5) }
                try await NamespaceAgents.with(cluster, directory: dir, allow: [try TestCluster.product("spindle-shard")]) { nodes in
                    // Shard servers dial a proxy in the root namespace that holds every chunk
                    // 1 ms each way before passing it to the listener (the kernel has no netem).
                    let proxy = Mutex<DelayingProxy?>(nil)
                    defer { proxy.withLock { $0 }?.close() }
                    let digest = try await RemoteColony.with(nodes, name: "lossy", coordinatorAddress: { listener in
                        let p = try await DelayingProxy.start(on: nodes.loop, listen: .tcp(host: TestCluster.rootAddress, port: 0),
                                                              upstream: listener, delay: .milliseconds(1))
                        proxy.withLock { $0 = p }
                        return p.address
                    }) { colony in
                        try await colony.digest(after: ticks)
                    }
                    #expect(digest == expected, "the colony through loss and latency diverged from one in-process shard")
                    #expect(proxy.withLock { $0 }?.connectionsAccepted == 6, "the shard servers did not all dial through the proxy")
                    try await nodes.waitUntilOnlyAgentsRun()
                }
                try await waitUntilNoProcessRuns(in: cluster)
            }
        }
    }
}

/// Ticks completed, counted by a ticking task and read by the test.
final class TickCount: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

/// Waits until no host of `cluster` runs any process (its agents stopped too).
func waitUntilNoProcessRuns(in cluster: TestCluster) async throws {
    for host in cluster.hosts {
        try await waitUntil("\(host.name) to have no process left") { (try? cluster.processes(in: host).isEmpty) == true }
    }
}
