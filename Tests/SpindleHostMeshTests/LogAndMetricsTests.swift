import MetricsTestKit
import Testing
import SpindleEventLoop
import SpindleKernel
import SpindleTCP
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

@Suite("Streamed logs and spindle_mesh_* metrics")
struct LogAndMetricsTests {
    @Test("10 000 lines from 4 procs arrive in per-rank order")
    func tenThousandLines() async throws {
        try await withAgents(2) { _, transport, _, addresses in
            var conf = testMeshConfiguration()
            conf.logBufferLines = 20_000
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: conf)
            let procs = try await mesh.spawnProcs(name: "talk", perHost: 2, options: SpawnOptions(readiness: .started)) { _ in
                BootstrapCommand(program: "sh", arguments: ["-c", "i=0; while [ $i -lt 2500 ]; do echo \"$SPINDLE_RANK $i\"; i=$((i+1)); done"])
            }
            let reader = Task { () -> ([Int: [Int]], Int) in
                var byRank: [Int: [Int]] = [:]
                var dropped = 0
                for await entry in procs.logs() {
                    switch entry {
                    case .line(let l):
                        let parts = l.text.split(separator: " ")
                        if parts.count == 2, let r = Int(parts[0]), let i = Int(parts[1]), r == l.rank { byRank[r, default: []].append(i) }
                    case .dropped(let n):
                        dropped += n
                    }
                }
                return (byRank, dropped)
            }
            try await waitUntil("every proc to end", timeout: .seconds(60)) { procs.lastKnown.allSatisfy(\.state.isTerminal) }
            #expect(procs.lastKnown.map(\.state) == Array(repeating: .stopped(exitCode: 0, stderrTail: []), count: 4))
            try await procs.stop()   // every rank final: the log stream ends once read
            let (byRank, dropped) = await reader.value
            #expect(dropped == 0)
            #expect(byRank.keys.sorted() == [0, 1, 2, 3])
            for r in 0..<4 {
                #expect(byRank[r] == Array(0..<2500), "rank \(r) in order, complete")
            }
            await mesh.shutdown()
        }
    }

    @Test("a flood beyond a subscriber's buffer is counted, not buffered without bound")
    func flood() async throws {
        try await withAgents(1) { _, transport, _, addresses in
            var conf = testMeshConfiguration()
            conf.logBufferLines = 500
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: conf)
            let procs = try await mesh.spawnProcs(name: "flood", perHost: 1, options: SpawnOptions(readiness: .started)) { _ in
                BootstrapCommand(program: "sh", arguments: ["-c", "i=0; while [ $i -lt 5000 ]; do echo line $i; i=$((i+1)); done"])
            }
            try await waitUntil("the proc to end", timeout: .seconds(60)) { procs.lastKnown[0].state.isTerminal }
            try await procs.stop()
            var lines = 0, dropped = 0
            for await entry in procs.logs() {
                switch entry {
                case .line: lines += 1
                case .dropped(let n): dropped += n
                }
            }
            #expect(lines == 500, "the buffer held its capacity and no more")
            #expect(lines + dropped == 5000, "every line is either delivered or counted")
            await mesh.shutdown()
        }
    }

    @Test("agents and clients count procs, pushes, refusals and hosts as spindle_mesh_* metrics")
    func metrics() async throws {
        let spindle = try spindleBinary()
        let agentMetrics = TestMetrics()
        let clientMetrics = TestMetrics()
        try await withAgents(1, configure: { $0.metricsFactory = agentMetrics }) { _, transport, agents, addresses in
            var conf = testMeshConfiguration()
            conf.metricsFactory = clientMetrics
            let mesh = try await HostMesh.attach(name: "mx", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: conf)
            let procs = try await mesh.spawnProcs(name: "w", perHost: 2) { _ in BootstrapCommand(program: spindle, arguments: ["proc"]) }
            await #expect(throws: ProcMeshError.self) {
                _ = try await mesh.spawnProcs(name: "bad", perHost: 1) { _ in BootstrapCommand(program: "/usr/bin/env") }
            }
            try await procs.stop()
            let agent = [("role", "agent")]
            #expect(try agentMetrics.expectCounter("spindle_mesh_procs_started_total", agent).totalValue == 2)
            #expect(try agentMetrics.expectCounter("spindle_mesh_procs_stopped_total", agent).totalValue == 2)
            #expect(try agentMetrics.expectCounter("spindle_mesh_config_pushes_total", agent).totalValue == 1)
            #expect(try agentMetrics.expectCounter("spindle_mesh_refusals_total", agent + [("reason", "program_not_allowed")]).totalValue == 1)
            #expect(try agentMetrics.expectGauge("spindle_mesh_procs_live", agent).lastValue == 0)
            #expect(agents[0].statistics.procsStarted == 2)
            let client = [("role", "client"), ("mesh", "mx")]
            #expect(try clientMetrics.expectCounter("spindle_mesh_config_pushes_total", client).totalValue == 1)
            #expect(try clientMetrics.expectGauge("spindle_mesh_hosts_up", client).lastValue == 1)
            #expect(mesh.statistics.hostsUp == 1)
            await mesh.shutdown()
        }
    }
}
