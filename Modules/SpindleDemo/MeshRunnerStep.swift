import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// Runs the colony in process with 1 and 4 shards, then with 4 remote shards: `spindle-shard`
/// procs spawned by two host agents (TCP loopback, cluster key) as a proc mesh. All three final
/// states must be identical.
func meshAndRunnerStep(_ log: DemoLog) async throws -> String {
    let ticks = 25
    let colony = ColonyConfiguration(seed: 2026, nodeCount: 512, agentCount: 128)

    // In process: 1 and 4 shards.
    var digests: [String: UInt64] = [:]
    for shards in [1, 4] {
        let coordinator = Coordinator()
        let members = try ColonyShard.makeShards(count: shards, configuration: colony, coordinator: coordinator)
        let runner = try DistributedRunner(coordinator: coordinator, shards: members,
                                           configuration: RunnerConfiguration(parallelism: 2))
        let results = try await runner.run(ticks)
        digests["\(shards) in-process"] = try await runner.stateDigest()
        await runner.shutdown()
        let edges = results.reduce(0) { $0 + $1.crossShardEdges.count }
        log.say("\(shards) in-process shard(s): \(ticks) ticks, \(edges) cross-shard edges, digest \(hex(digests["\(shards) in-process"]!))")
    }

    // Remote: two host agents on TCP loopback with a cluster key, 2 shard procs each.
    let shardProgram = executableDirectory() + "/spindle-shard"
    let loop = try EventLoop(name: "demo-mesh")
    // The cluster key lives in a file the agents hand to their procs (SPINDLE_KEY_FILE).
    let keyFile = try writeDemoKeyFile()
    defer { removeDemoKeyFile(keyFile) }
    var tcpConfig = TCPTransport.Configuration()
    tcpConfig.clusterKey = try ClusterKey(contentsOfFile: keyFile)
    tcpConfig.logger = quietLogger("demo.tcp")
    let tcp = TCPTransport(loop: loop, configuration: tcpConfig)
    var agents: [HostAgent] = []
    var mesh: HostMesh? = nil
    var listener: ShardServerListener? = nil
    func tearDown() async {
        listener?.shutdown()
        await mesh?.shutdown()
        for a in agents { await a.shutdown() }
        await tcp.shutdown()
        await loop.shutdown()
    }
    do {
        var hosts: [Address] = []
        for _ in 0..<2 {
            var c = HostAgent.Configuration()
            c.listenAddress = .tcp(host: "127.0.0.1", port: 0)
            c.allowedPrograms = [shardProgram]
            c.transportAuthenticates = true
            c.procKeyFile = keyFile
            c.forwardProcStdout = false
            c.logger = quietLogger("demo.agent")
            let agent = HostAgent(on: loop, transport: tcp, configuration: c)
            agents.append(agent)
            hosts.append(try await agent.start())
        }
        log.say("host agents listening on \(hosts.map(\.description).joined(separator: ", "))")
        let coordinator = Coordinator()
        let l = try await ShardServerListener.listen(on: .tcp(host: "127.0.0.1", port: 0), transport: tcp,
                                                    hlc: coordinator.hlc)
        listener = l
        var meshConfig = HostMesh.Configuration()
        meshConfig.logger = quietLogger("demo.mesh")
        let m = try await HostMesh.attach(name: "colony", hosts: hosts,
                                          config: ConfigSnapshot(["model": "colony", "seed": "2026"]),
                                          timeout: .seconds(10), transport: tcp, configuration: meshConfig)
        mesh = m
        log.say("attached mesh \(m.ref): config installed on \(hosts.count) hosts")
        let procs = try await m.spawnProcs(name: "shards", perHost: 2) { _ in
            BootstrapCommand(program: shardProgram,
                             arguments: ["--coordinator", "\(l.address)", "--seed", "2026",
                                         "--nodes", "512", "--agents", "128"])
        }
        log.say("proc mesh ready: \(procs.count) shard servers \(await procs.states().map(\.description))")
        let remotes = try await l.waitForShards(count: 4, timeout: .seconds(30))
        let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) })
        _ = try await runner.run(ticks)
        digests["4 remote"] = try await runner.stateDigest()
        await runner.shutdown()
        log.say("4 remote shards over TCP: digest \(hex(digests["4 remote"]!))")
        l.shutdown()
        try await procs.stop()
        log.say("procs stopped: \(procs.lastKnown.map(\.description))")
    } catch {
        await tearDown()
        throw error
    }
    await tearDown()
    let distinct = Set(digests.values)
    guard distinct.count == 1, let d = distinct.first else {
        throw DemoError("colony digests differ: \(digests)")
    }
    return "colony digest \(hex(d)) identical for 1, 4 in-process and 4 remote shards"
}

func hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

/// Writes a fresh random cluster key (as `spindle keygen` does) into a private temporary
/// directory and returns the file's path; `removeDemoKeyFile` deletes both.
func writeDemoKeyFile() throws -> String {
    var template = Array("/tmp/spindle-demo-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw DemoError("cannot create a directory in /tmp: \(String(cString: strerror(errno)))")
    }
    let directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    let path = directory + "/cluster.key"
    try ClusterKey.random().write(toFile: path)
    return path
}

/// Deletes a key file made by `writeDemoKeyFile` and its directory.
func removeDemoKeyFile(_ path: String) {
    unlink(path)
    if let slash = path.lastIndex(of: "/") { rmdir(String(path[..<slash])) }
}
