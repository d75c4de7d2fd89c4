import Foundation
import SpindleEventLoop
import SpindleHostMesh
import SpindleKernel
import SpindleTCP
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
