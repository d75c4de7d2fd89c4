import SpindleEventLoop
import SpindleHostMesh
import SpindleKernel
import SpindleTCP
import Testing
@testable import SpindleRunner

@Suite("Remote shards on a host mesh's proc mesh")
struct ProcMeshTests {
    @Test("shard servers spawned as a proc mesh (2 hosts × 2 procs) give the in-process colony state")
    func colonyOnProcMesh() async throws {
        let configuration = ColonyConfiguration(seed: 91, nodeCount: 256, agentCount: 64)
        let local = try await runColony(shards: 1, ticks: 15, configuration: configuration)
        let executable = try shardServerExecutable()
        let loop = try EventLoop(name: "runner-mesh-test")
        let transport = TCPTransport(loop: loop)
        var agents: [HostAgent] = []
        var listener: ShardServerListener? = nil
        var mesh: HostMesh? = nil
        func tearDown() async {
            listener?.shutdown()
            await mesh?.shutdown()
            for a in agents { await a.shutdown() }
            await transport.shutdown()
            await loop.shutdown()
        }
        do {
            var addresses: [Address] = []
            for _ in 0..<2 {
                var c = HostAgent.Configuration()
                c.listenAddress = .tcp(host: "127.0.0.1", port: 0)
                c.allowedPrograms = [executable]
                c.stopGrace = .seconds(2)
                c.forwardProcStdout = false
                c.logger.logLevel = .warning
                let agent = HostAgent(on: loop, transport: transport, configuration: c)
                agents.append(agent)
                addresses.append(try await agent.start())
            }
            let coordinator = Coordinator()
            let l = try await ShardServerListener.listen(on: .tcp(host: "127.0.0.1", port: 0), transport: transport,
                                                        hlc: coordinator.hlc)
            listener = l
            let m = try await HostMesh.attach(name: "runner", hosts: addresses, config: ConfigSnapshot(["model": "colony"]),
                                              timeout: .seconds(20), transport: transport)
            mesh = m
            // Rank r serves shard r + 1 of SPINDLE_WORLD_SIZE shards.
            let procs = try await m.spawnProcs(name: "shards", perHost: 2) { _ in
                BootstrapCommand(program: executable,
                                 arguments: ["--coordinator", "\(l.address)", "--seed", "91", "--nodes", "256", "--agents", "64"])
            }
            #expect(procs.count == 4)
            let remotes = try await l.waitForShards(count: 4, timeout: .seconds(30))
            #expect(remotes.map(\.id) == (1...4).map { ShardID(UInt64($0)) })
            let runner = try DistributedRunner(coordinator: coordinator, members: remotes.map { .remote($0) })
            let results = try await runner.run(15)
            #expect(results.map(\.tick) == Array(1...15))
            let digest = try await runner.stateDigest()
            await runner.shutdown()
            #expect(digest == local.digest)
            l.shutdown()
            try await procs.stop()
        } catch {
            await tearDown()
            throw error
        }
        await tearDown()
    }
}
