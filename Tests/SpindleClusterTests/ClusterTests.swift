import Foundation
import SpindleEventLoop
import SpindleHostMesh
import SpindleKernel
import SpindleNodeEngine
import SpindleTCP
import Synchronization
import Testing

/// Spindle across hosts: network namespaces stand in for machines (scripts/testcluster), real
/// `spindle host-agent` processes run inside them with a key file, bound to the host's
/// address. Run with `make test-cluster` (root); skipped elsewhere with the reason.
@Suite("Cluster", .serialized, .enabled(if: TestCluster.unavailable == nil, "\(TestCluster.unavailable ?? "")"),
       .timeLimit(.minutes(5)))
struct ClusterTests {
    @Test("an agent refuses to listen on a host address without a key file")
    func agentRefusesPlaintextBeyondLoopback() async throws {
        let spindle = try TestCluster.product("spindle")
        try await TestCluster.with(1) { cluster in
            let host = cluster.hosts[0]
            let (status, out, err) = try TestCluster.execute("/usr/sbin/ip", Array(cluster.inside(host, [
                spindle, "host-agent", "--listen", "tcp://\(host.address):0"]).dropFirst()))
            #expect(status != 0 && !out.contains("listening on"), "an agent listened beyond loopback without a key: \(out)")
            #expect(err.contains("without a cluster key"), "the refusal does not say why: \(err)")
            #expect(try cluster.processes(in: host).isEmpty)
        }
    }

    @Test("spindle cluster up --ssh brings an agent up on each of 3 hosts; down leaves none")
    func sshLauncher() async throws {
        let spindle = try TestCluster.product("spindle")
        try await withScratchDirectory { dir in
            try await TestCluster.with(3) { cluster in
                let ssh = try TestSSH.start(in: cluster, directory: dir)
                defer { ssh.stop() }
                let key = dir + "/cluster.key"
                try TestCluster.run(spindle, ["keygen", key])
                let state = dir + "/cluster.state"
                let hosts = cluster.hosts.map(\.address).joined(separator: ",")
                let ref = try TestCluster.run(spindle, ["cluster", "up", "--ssh", hosts, "--key-file", key, "--name", "nsmesh",
                                                        "--state-file", state, "--detach", "--timeout", "60"] + ssh.launcherArguments)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                let parsed = try HostMeshRef(parsing: ref)
                #expect(parsed.name == "nsmesh")
                #expect(parsed.hosts.map { if case .tcp(let h, _) = $0 { h } else { "" } } == cluster.hosts.map(\.address),
                        "agents advertise the host addresses they were reached by: \(ref)")
                // Every host runs an agent (and sshd).
                for host in cluster.hosts {
                    #expect(try cluster.processes(in: host).count >= 2, "no agent in \(host.name)")
                }
                let status = try TestCluster.run(spindle, ["mesh", "status", ref, "--key-file", key])
                for host in cluster.hosts {
                    #expect(status.contains("tcp://\(host.address):"), "status lacks \(host.name): \(status)")
                }
                #expect(!status.contains("unreachable"), "\(status)")
                let down = try TestCluster.run(spindle, ["cluster", "down", "--state-file", state])
                #expect(down.contains("down"))
                ssh.stop()
                for host in cluster.hosts {
                    try await waitUntil("\(host.name) to have no process left") { (try? cluster.processes(in: host).isEmpty) == true }
                }
            }
        }
    }
}

/// Polls `condition` every 50 ms until it holds; fails after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws {
    let deadline = SystemClock().now() + timeout
    while !condition() {
        guard SystemClock().now() < deadline else { throw ClusterTestError("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

extension ClusterTests {
    /// Node a (this namespace) asks node b (a fixture process in spn2) to double `count`
    /// numbers, `count` calls at once; every answer must be exact.
    static func doublerCalls(count: Int, through peer: (Address) async throws -> Address,
                             cluster: TestCluster, key: String, loop: EventLoop) async throws {
        let fixture = try TestCluster.product("ClusterNodeFixture")
        let b = try await LineProcess(on: loop, cluster.inside(cluster.hosts[1], [
            fixture, "--listen", "tcp://\(cluster.hosts[1].address):0", "--key-file", key]))
        do {
            let line = try await b.line(containing: "listening on")
            let parts = line.split(separator: " ")
            let bID = try NodeID(parsing: String(parts[1]))
            let bAddress = try Address(parsing: String(parts.last!))
            var config = TCPTransport.Configuration()
            config.clusterKey = try ClusterKey(contentsOfFile: key)
            let tcp = TCPTransport(loop: loop, configuration: config)
            var client = ProgramBuilder("asker")
            client.site("question", .int); client.site("answer", .int)
            client.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer"],
                           params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(60_000)])
            let a = Node()
            try a.install(client.program)
            a.addPeer(bID, name: "b", addresses: [try await peer(bAddress)])
            var driverConfig = NodeDriver.Configuration()
            driverConfig.link.core.livenessBound = .seconds(30)
            driverConfig.link.core.connectTimeout = .seconds(30)
            let driver = try await NodeDriver.start(node: a, on: loop, transport: tcp, configuration: driverConfig)
            let answers = try await withThrowingTaskGroup(of: (Int64, Int64).self) { group in
                for i in 0..<Int64(count) {
                    group.addTask {
                        let answer: Int64 = try await driver.call(site: "question", value: i, timeout: .seconds(60))
                        return (i, answer)
                    }
                }
                var all: [(Int64, Int64)] = []
                for try await pair in group { all.append(pair) }
                return all
            }
            #expect(answers.count == count)
            #expect(answers.allSatisfy { $0.1 == 2 * $0.0 }, "a wrong answer came back")
            await driver.shutdown()
            await tcp.shutdown()
            await b.stop()
        } catch {
            await b.stop()
            throw error
        }
    }

    @Test("two node-engine nodes on different hosts: 1 000 request/responses, every answer right")
    func nodesAcrossHosts() async throws {
        try await withScratchDirectory { dir in
            try await TestCluster.with(2) { cluster in
                let key = dir + "/cluster.key"
                try TestCluster.run(try TestCluster.product("spindle"), ["keygen", key])
                let loop = try EventLoop(name: "cluster-nodes")
                do {
                    try await Self.doublerCalls(count: 1_000, through: { $0 }, cluster: cluster, key: key, loop: loop)
                } catch {
                    await loop.shutdown()
                    throw error
                }
                await loop.shutdown()
            }
        }
    }

    @Test("with 5% packet loss on the hosts and 1 ms of added latency, every answer is still right")
    func nodesThroughLossAndLatency() async throws {
        try await withScratchDirectory { dir in
            try await TestCluster.with(2) { cluster in
                let key = dir + "/cluster.key"
                try TestCluster.run(try TestCluster.product("spindle"), ["keygen", key])
                for host in cluster.hosts { try cluster.loss(host, percent: 5) }
                let loop = try EventLoop(name: "cluster-lossy")
                let proxies = Mutex<[DelayingProxy]>([])
                do {
                    try await Self.doublerCalls(count: 500, through: { target in
                        let proxy = try await DelayingProxy.start(on: loop, listen: .tcp(host: TestCluster.rootAddress, port: 0),
                                                                  upstream: target, delay: .milliseconds(1))
                        proxies.withLock { $0.append(proxy) }
                        return proxy.address
                    }, cluster: cluster, key: key, loop: loop)
                } catch {
                    for p in proxies.withLock({ $0 }) { p.close() }
                    await loop.shutdown()
                    throw error
                }
                for p in proxies.withLock({ $0 }) { p.close() }
                await loop.shutdown()
            }
        }
    }
}

extension ClusterTests {
    @Test("a node's host cut off: its pending calls fail naming it, nothing hangs; healed, calls succeed again")
    func nodeCallsThroughPartition() async throws {
        try await withScratchDirectory { dir in
            try await TestCluster.with(2) { cluster in
                let key = dir + "/cluster.key"
                try TestCluster.run(try TestCluster.product("spindle"), ["keygen", key])
                let loop = try EventLoop(name: "cluster-partition")
                let fixture = try TestCluster.product("ClusterNodeFixture")
                let host = cluster.hosts[1]
                let b = try await LineProcess(on: loop, cluster.inside(host, [
                    fixture, "--listen", "tcp://\(host.address):0", "--key-file", key]))
                var config = TCPTransport.Configuration()
                config.clusterKey = try ClusterKey(contentsOfFile: key)
                let tcp = TCPTransport(loop: loop, configuration: config)
                var driver: NodeDriver?
                do {
                    let line = try await b.line(containing: "listening on")
                    let parts = line.split(separator: " ")
                    let bID = try NodeID(parsing: String(parts[1]))
                    let bAddress = try Address(parsing: String(parts.last!))
                    var client = ProgramBuilder("asker")
                    client.site("question", .int); client.site("answer", .int)
                    client.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer"],
                                   params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(120_000)])
                    let a = Node()
                    try a.install(client.program)
                    a.addPeer(bID, name: "b", addresses: [bAddress])
                    // The production liveness bound (5 s): a cut host is noticed by the link and
                    // the engine's watch on the peers it calls.
                    let d = try await NodeDriver.start(node: a, on: loop, transport: tcp)
                    driver = d
                    for i in 0..<Int64(20) {
                        let answer: Int64 = try await d.call(site: "question", value: i, timeout: .seconds(60))
                        #expect(answer == 2 * i)
                    }

                    // Cut: calls in flight and calls made now fail, naming b, long before their
                    // own two-minute deadlines.
                    try cluster.cut(host)
                    let failures = try await withThrowingTaskGroup(of: NodeCallError?.self) { group in
                        for i in 0..<Int64(10) {
                            group.addTask {
                                do {
                                    let _: Int64 = try await d.call(site: "question", value: i, timeout: .seconds(120))
                                    return nil
                                } catch let error as NodeCallError {
                                    return error
                                }
                            }
                        }
                        var all: [NodeCallError?] = []
                        for try await f in group { all.append(f) }
                        return all
                    }
                    #expect(failures.count == 10)
                    for failure in failures {
                        guard case .failed(let f)? = failure else {
                            Issue.record("a call across the cut did not fail: \(String(describing: failure))")
                            continue
                        }
                        switch f.reason {
                        case .peerDown(let peer), .unreachable(let peer, _):
                            #expect(peer == bID, "the failure names another peer: \(f)")
                        default:
                            Issue.record("a call across the cut failed for another reason: \(f)")
                        }
                    }

                    // Heal: the link reconnects and calls are answered again.
                    try cluster.heal(host)
                    let deadline = SystemClock().now() + .seconds(60)
                    var healed = false
                    while !healed && SystemClock().now() < deadline {
                        if let answer: Int64 = try? await d.call(site: "question", value: 21, timeout: .seconds(10)) {
                            #expect(answer == 42)
                            healed = true
                        } else {
                            try await Task.sleep(for: .milliseconds(200))
                        }
                    }
                    #expect(healed, "no call was answered within 60 s of healing the partition")
                } catch {
                    await driver?.shutdown()
                    await tcp.shutdown()
                    await b.stop()
                    await loop.shutdown()
                    throw error
                }
                await driver?.shutdown()
                await tcp.shutdown()
                await b.stop()
                await loop.shutdown()
                try await waitUntil("\(host.name) to have no process left") { (try? cluster.processes(in: host).isEmpty) == true }
            }
        }
    }
}
