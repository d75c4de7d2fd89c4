import Foundation
import SpindleEventLoop
import SpindleHostMesh
import SpindleKernel
import SpindleTCP
import Synchronization
import Testing

/// Agents in namespaces, started by the test (`spindle host-agent` with a key file, bound to
/// each host's address), and a client in the root namespace.
struct NamespaceAgents {
    let cluster: TestCluster
    let keyFile: String
    let agents: [LineProcess]
    let addresses: [Address]
    let loop: EventLoop
    let transport: TCPTransport

    /// Starts one agent per host (allowing the programs in `allow`), then runs `body`; stops
    /// everything after.
    static func with<R>(_ cluster: TestCluster, directory: String, liveness: Int = 5, allow: [String] = ["sh"],
                        _ body: (NamespaceAgents) async throws -> R) async throws -> R {
        let spindle = try TestCluster.product("spindle")
        let keyFile = directory + "/cluster.key"
        try TestCluster.run(spindle, ["keygen", keyFile])
        let loop = try EventLoop(name: "cluster-mesh")
        var agents: [LineProcess] = []
        var config = TCPTransport.Configuration()
        config.clusterKey = try ClusterKey(contentsOfFile: keyFile)
        let transport = TCPTransport(loop: loop, configuration: config)
        func cleanUp() async {
            await transport.shutdown()
            for a in agents { await a.stop() }
            await loop.shutdown()
        }
        do {
            var addresses: [Address] = []
            for host in cluster.hosts {
                let agent = try await LineProcess(on: loop, cluster.inside(host, [
                    spindle, "host-agent", "--listen", "tcp://\(host.address):0", "--key-file", keyFile,
                    "--allow"] + allow + ["--grace", "2", "--liveness", "\(liveness)",
                    // LineProcess.stop closes stdin first: the agent shuts down at once.
                    "--exit-on-stdin-close"]))
                agents.append(agent)
                let line = try await agent.line(containing: "listening on")
                addresses.append(try Address(parsing: String(line.split(separator: " ").last!)))
            }
            let r = try await body(NamespaceAgents(cluster: cluster, keyFile: keyFile, agents: agents, addresses: addresses,
                                                   loop: loop, transport: transport))
            await cleanUp()
            return r
        } catch {
            await cleanUp()
            throw error
        }
    }

    /// Waits until every host runs nothing but its agent.
    func waitUntilOnlyAgentsRun() async throws {
        for host in cluster.hosts {
            try await waitUntil("\(host.name) to run only its agent", timeout: .seconds(60)) {
                (try? cluster.processes(in: host).count) == 1
            }
        }
    }
}

/// Two procs per host that say who they are and then wait.
private func sayAndWait(_ rank: Int) -> BootstrapCommand {
    BootstrapCommand(program: "sh", arguments: ["-c", "echo \"rank $SPINDLE_RANK of $SPINDLE_WORLD_SIZE up\"; exec sleep 600"])
}

extension ClusterTests {
    @Test("attach from the root namespace to 3 hosts; 2 procs per host: states, logs and stop; mesh status shows every host")
    func meshAcrossHosts() async throws {
        try await withScratchDirectory { dir in
            try await TestCluster.with(3) { cluster in
                try await NamespaceAgents.with(cluster, directory: dir) { nodes in
                    let mesh = try await HostMesh.attach(name: "nsmesh", hosts: nodes.addresses,
                                                         config: ConfigSnapshot(["model": "colony"]), timeout: .seconds(30),
                                                         transport: nodes.transport)
                    let procs = try await mesh.spawnProcs(name: "w", perHost: 2, options: SpawnOptions(readiness: .started),
                                                          bootstrap: sayAndWait)
                    // Every rank's line arrives, tagged with its rank.
                    let lines = Task { () -> [Int: String] in
                        var byRank: [Int: String] = [:]
                        for await entry in procs.logs() {
                            if case .line(let l) = entry { byRank[l.rank] = l.text }
                            if byRank.count == 6 { break }
                        }
                        return byRank
                    }
                    let states = await procs.states()
                    #expect(states == Array(repeating: .ready, count: 6), "\(states)")
                    let byRank = try await within(.seconds(30), "every rank's first line") { await lines.value }
                    #expect(byRank == Dictionary(uniqueKeysWithValues: (0..<6).map { ($0, "rank \($0) of 6 up") }))
                    for host in cluster.hosts {
                        // The agent, and per proc its keeper and the proc.
                        #expect(try cluster.processes(in: host).count == 5, "\(host.name) should run an agent and 2 kept procs")
                    }

                    let ref = try HostMeshRef(name: "nsmesh", hosts: nodes.addresses).description
                    let status = try TestCluster.run(try TestCluster.product("spindle"),
                                                     ["mesh", "status", ref, "--key-file", nodes.keyFile])
                    for address in nodes.addresses {
                        #expect(status.contains(address.description), "status lacks \(address): \(status)")
                    }
                    #expect(!status.contains("unreachable"), "\(status)")

                    try await procs.stop()
                    let final = await procs.states()
                    let allFinal = final.allSatisfy { $0.isTerminal }
                    #expect(allFinal, "\(final)")
                    try await nodes.waitUntilOnlyAgentsRun()
                    await mesh.shutdown()
                }
            }
        }
    }

    @Test("a host cut off: the mesh reports it lost, its ranks hostLost, its agent stops its procs; healed, a new attach works")
    func meshThroughPartition() async throws {
        try await withScratchDirectory { dir in
            try await TestCluster.with(3) { cluster in
                try await NamespaceAgents.with(cluster, directory: dir) { nodes in
                    var conf = HostMesh.Configuration()
                    conf.livenessBound = .seconds(5)
                    let mesh = try await HostMesh.attach(name: "cutmesh", hosts: nodes.addresses, config: ConfigSnapshot(),
                                                         timeout: .seconds(30), transport: nodes.transport, configuration: conf)
                    let events = mesh.events()
                    let procs = try await mesh.spawnProcs(name: "w", perHost: 2, options: SpawnOptions(readiness: .started),
                                                          bootstrap: sayAndWait)
                    #expect(await procs.states() == Array(repeating: .ready, count: 6))

                    let cut = cluster.hosts[1]
                    try cluster.cut(cut)
                    let lost = try await within(.seconds(60), "the mesh to report \(cut.name) lost") { () -> (Address, Int)? in
                        for await event in events {
                            if case .hostLost(let host, let rank, _) = event { return (host, rank) }
                        }
                        return nil
                    }
                    #expect(lost?.0 == nodes.addresses[1] && lost?.1 == 1, "\(String(describing: lost))")
                    let states = await procs.states()
                    for rank in [2, 3] {
                        guard case .hostLost = states[rank] else {
                            Issue.record("rank \(rank) on the cut host is \(states[rank]), not hostLost")
                            continue
                        }
                    }
                    #expect(states[0] == .ready && states[5] == .ready, "ranks on the other hosts keep running: \(states)")
                    // The cut host's agent loses its client too, and stops that client's procs.
                    try await waitUntil("the cut host's agent to stop the lost client's procs", timeout: .seconds(60)) {
                        (try? cluster.processes(in: cut).count) == 1
                    }

                    try await procs.stop()
                    await mesh.shutdown()
                    try cluster.heal(cut)
                    let again = try await HostMesh.attach(name: "healed", hosts: nodes.addresses, config: ConfigSnapshot(),
                                                          timeout: .seconds(60), transport: nodes.transport)
                    let more = try await again.spawnProcs(name: "w2", perHost: 1, options: SpawnOptions(readiness: .started),
                                                          bootstrap: sayAndWait)
                    #expect(await more.states() == Array(repeating: .ready, count: 3))
                    try await more.stop()
                    await again.shutdown()
                    try await nodes.waitUntilOnlyAgentsRun()
                }
            }
        }
    }
}

/// Runs `body`, failing with `what` if it takes longer than `timeout`.
func within<T: Sendable>(_ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw ClusterTestError("timed out after \(timeout) waiting for \(what)")
        }
        group.cancelAll()
        return value
    }
}
