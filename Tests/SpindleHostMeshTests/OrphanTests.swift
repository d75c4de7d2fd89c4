import Testing
import SpindleEventLoop
import SpindleKernel
import SpindleTCP
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

/// No orphans: every proc runs in its own process group under a keeper; stopping it, or the
/// agent ending by any means, leaves no process it started — grandchildren included. And
/// 1 000 spawn/stop cycles leave an agent's descriptors and memory flat.
@Suite("No orphans, no leaks", .serialized)
struct OrphanTests {
    /// A proc that starts a grandchild in the background and waits: `sh`, two `sleep`s.
    static func family(_ tag: String) -> BootstrapCommand {
        BootstrapCommand(program: "sh", arguments: ["-c", "sleep 600 & sleep 600"], environment: ["SPINDLE_TEST_TAG": tag])
    }

    /// The process groups of the procs (not of their keepers), once every family is complete.
    static func groups(_ tag: String, procs: Int) async throws -> Set<Int32> {
        try await waitUntil("\(procs) families of sh and two sleeps", timeout: .seconds(30), every: .milliseconds(200)) {
            taggedProcesses(tag).filter { $0.command.hasPrefix("sleep") }.count == 2 * procs
        }
        let seen = taggedProcesses(tag)
        let groups = Set(seen.filter { !$0.command.contains("spindle-keeper") }.map(\.pgid))
        #expect(groups.count == procs, "each proc has a process group of its own: \(seen)")
        for p in seen where !p.command.contains("spindle-keeper") {
            #expect(groups.contains(p.pgid))
        }
        #expect(!groups.contains(getpgrp()))
        return groups
    }

    static func expectNothingLeft(_ tag: String, _ groups: Set<Int32>) async throws {
        try await waitUntil("every tagged process to be gone", timeout: .seconds(30), every: .milliseconds(200)) { taggedProcesses(tag).isEmpty }
        #expect(processesInGroups(groups).isEmpty)
    }

    @Test("kill -9 of the agent: hostLost within the bound, pending calls fail naming it, nothing it started remains")
    func agentKilled() async throws {
        let tag = newTag()
        try await withAgentDaemon("orphan-kill-test", extra: ["--allow", "sh", try spindleBinary()]) { daemon, transport, spindle in
            let address = try await readListeningAddress(daemon)
            var conf = testMeshConfiguration()
            conf.spawnIdleTimeout = .seconds(120)
            conf.livenessBound = .seconds(5)   // under test: the production bound
            let mesh = try await HostMesh.attach(name: "m", hosts: [address], config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: conf)
            let procs = try await mesh.spawnProcs(name: "g", perHost: 2, options: SpawnOptions(readiness: .started)) { _ in
                Self.family(tag)
            }
            let groups = try await Self.groups(tag, procs: 2)
            let events = mesh.events()
            // A pending call: a spawn whose proc never announces itself ready.
            let pending = Task { () -> ProcMeshError? in
                do throws(ProcMeshError) {
                    _ = try await mesh.spawnProcs(name: "hang", perHost: 1) { _ in
                        BootstrapCommand(program: "sh", arguments: ["-c", "exec sleep 601"], environment: ["SPINDLE_TEST_TAG": tag])
                    }
                    return nil
                } catch {
                    return error
                }
            }
            try await waitUntil("the pending spawn's proc to run", timeout: .seconds(30), every: .milliseconds(200)) {
                taggedProcesses(tag).contains { $0.command == "sleep 601" }
            }
            let clock = ContinuousClock()
            let killedAt = clock.now
            try daemon.kill(SIGKILL)
            #expect(await daemon.wait() == .signaled(signal: SIGKILL))
            let lost = try await firstEvent(events, "hostLost") { e -> Address? in
                if case .hostLost(let h, _, _) = e { return h } else { return nil }
            }
            let after = clock.now - killedAt
            #expect(lost == address)
            #expect(after <= conf.livenessBound + .seconds(3), "declared lost \(after) after the kill (bound \(conf.livenessBound))")
            let error = await pending.value
            switch error {
            case .hostLost(_, let host, _)?, .hostFailed(_, let host, _)?:
                #expect(host == address)
                #expect(error!.description.contains(address.description))
            default:
                Issue.record("the pending spawn ended with \(String(describing: error))")
            }
            #expect(clock.now - killedAt < .seconds(60), "the pending call failed at once, not at its idle timeout")
            #expect(procs.lastKnown.allSatisfy { if case .hostLost = $0.state { true } else { false } })
            try await Self.expectNothingLeft(tag, groups)
            await mesh.shutdown()
        }
    }

    @Test("stop() ends every process of every group, grandchildren included")
    func stopLeavesNothing() async throws {
        let tag = newTag()
        try await withAgents(1) { _, transport, _, addresses in
            let mesh = try await HostMesh.attach(name: "m", hosts: addresses, config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: testMeshConfiguration())
            let procs = try await mesh.spawnProcs(name: "g", perHost: 2, options: SpawnOptions(readiness: .started)) { _ in
                Self.family(tag)
            }
            let groups = try await Self.groups(tag, procs: 2)
            try await procs.stop()
            #expect(procs.lastKnown.map(\.state) == [.killed(signal: SIGTERM), .killed(signal: SIGTERM)])
            try await Self.expectNothingLeft(tag, groups)
            await mesh.shutdown()
        }
    }

    @Test("the agent's SIGTERM ends every process of every group, grandchildren included")
    func agentTerminated() async throws {
        let tag = newTag()
        try await withAgentDaemon("orphan-term-test", extra: ["--allow", "sh", "--grace", "2"]) { daemon, transport, spindle in
            let address = try await readListeningAddress(daemon)
            let mesh = try await HostMesh.attach(name: "m", hosts: [address], config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: testMeshConfiguration())
            let procs = try await mesh.spawnProcs(name: "g", perHost: 2, options: SpawnOptions(readiness: .started)) { _ in
                Self.family(tag)
            }
            let groups = try await Self.groups(tag, procs: 2)
            try daemon.kill(SIGTERM)
            #expect(await daemon.wait() == .exited(code: 0))
            try await Self.expectNothingLeft(tag, groups)
            try await waitUntil("the client to learn the procs ended") { procs.lastKnown.allSatisfy(\.state.isTerminal) }
            await mesh.shutdown()
        }
    }

    @Test("1 000 spawn/stop cycles against one agent: its descriptors and RSS stay flat")
    func spawnStopCycles() async throws {
        try await withAgentDaemon("cycles-test", extra: ["--allow", "sleep"]) { daemon, transport, spindle in
            let address = try await readListeningAddress(daemon)
            let mesh = try await HostMesh.attach(name: "m", hosts: [address], config: ConfigSnapshot(), timeout: .seconds(20),
                                                 transport: transport, configuration: testMeshConfiguration())
            let options = SpawnOptions(readiness: .started)
            func cycle() async throws {
                let procs = try await mesh.spawnProcs(name: "cycle", perHost: 1, options: options) { _ in
                    BootstrapCommand(program: "sleep", arguments: ["600"])
                }
                try await procs.stop()
            }
            // SPINDLE_CYCLES=N measures longer runs (docs/hostmesh.md); the test runs 1 000.
            let warmUp = 100
            let total = max(getenv("SPINDLE_CYCLES").flatMap { Int(String(cString: $0)) } ?? 1000, warmUp + 1)
            for _ in 0..<warmUp { try await cycle() }
            let fds0 = openDescriptors(daemon.pid), rss0 = residentKiB(daemon.pid)
            let clock = ContinuousClock()
            let start = clock.now
            for i in warmUp..<total {
                try await cycle()
                if (i + 1) % 500 == 0 {
                    print("spawn/stop cycles: \(i + 1): agent fds \(openDescriptors(daemon.pid)), RSS \(residentKiB(daemon.pid)) KiB")
                }
            }
            let took = clock.now - start
            let fds1 = openDescriptors(daemon.pid), rss1 = residentKiB(daemon.pid)
            print("spawn/stop cycles: agent fds \(fds0) → \(fds1), RSS \(rss0) KiB → \(rss1) KiB after \(total) cycles; "
                  + "\(total - warmUp) cycles took \(took)")
            #expect(fds0 > 0 && fds1 > 0)
            #expect(fds1 - fds0 <= 2, "descriptors grew from \(fds0) to \(fds1)")
            #expect(rss1 - rss0 <= 8 * 1024, "RSS grew from \(rss0) KiB to \(rss1) KiB")
            await mesh.shutdown()
            try daemon.kill(SIGTERM)
            #expect(await daemon.wait() == .exited(code: 0))
        }
    }
}
