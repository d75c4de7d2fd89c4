import Testing
import SpindleKernel
@testable import SpindleHostMesh

@Suite("HostMeshRef")
struct HostMeshRefTests {
    @Test("prints and parses back", arguments: [
        "m@",
        "m@tcp://127.0.0.1:7100",
        "trainers@tcp://10.0.0.1:7100,tcp://host-b.example:7100",
        "v6.mesh_1@tcp://[::1]:7100,tcp://[fe80::1]:9",
        "u@unix:///tmp/a.sock,unix:///tmp/with%2Ccomma%25pct.sock,inproc://agent-1",
        "mixed@tcp://127.0.0.1:1,tcp://[2001:db8::2]:65535,unix:///run/spindle/agent.sock",
    ])
    func roundTrip(text: String) throws {
        let ref = try HostMeshRef(parsing: text)
        #expect(ref.description == text)
        #expect(try HostMeshRef(parsing: ref.description) == ref)
    }

    @Test("unix paths with commas and percent signs survive")
    func escaping() throws {
        let ref = try HostMeshRef(name: "m", hosts: [.unix(path: "/tmp/a,b%c.sock"), .tcp(host: "::1", port: 1)])
        #expect(ref.description == "m@unix:///tmp/a%2Cb%25c.sock,tcp://[::1]:1")
        #expect(try HostMeshRef(parsing: ref.description) == ref)
    }

    @Test("bad strings give the right error")
    func errors() {
        func problem(_ s: String) -> HostMeshRefError.Problem? {
            do { _ = try HostMeshRef(parsing: s); return nil } catch { return error.problem }
        }
        #expect(problem("") == .missingSeparator)
        #expect(problem("tcp://127.0.0.1:1") == .missingSeparator)
        #expect(problem("@tcp://127.0.0.1:1") == .missingName)
        #expect(problem("a b@tcp://127.0.0.1:1") == .badName(character: " ", offset: 1))
        #expect(problem("m@tcp://127.0.0.1:1,") == .emptyHost(index: 1))
        #expect(problem("m@,tcp://127.0.0.1:1") == .emptyHost(index: 0))
        #expect(problem("m@unix:///a%zz") == .badEscape(index: 0))
        #expect(problem("m@tcp://127.0.0.1:1,tcp://127.0.0.1:1")
                == .duplicateHost(index: 1, host: .tcp(host: "127.0.0.1", port: 1)))
        guard case .badAddress(let i, let e) = problem("m@tcp://127.0.0.1:1,tcp://::1:7") else {
            Issue.record("expected badAddress"); return
        }
        #expect(i == 1)
        #expect(e.part == .host)
        guard case .badAddress(0, let e2) = problem("m@tcp://h:99999") else {
            Issue.record("expected badAddress"); return
        }
        #expect(e2.part == .port)
        #expect(HostMeshRef("nope") == nil)
    }

    @Test("error text names the string and the problem")
    func errorText() {
        do {
            _ = try HostMeshRef(parsing: "m@tcp://1.2.3.4:1,bogus")
            Issue.record("parsed")
        } catch {
            #expect(error.description.contains("m@tcp://1.2.3.4:1,bogus"))
            #expect(error.description.contains("host 1"))
        }
    }

    @Test("slicing keeps the name and the chosen hosts in order")
    func slicing() throws {
        let ref = try HostMeshRef(parsing: "m@tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3")
        let s = try ref.slice(1..<3)
        #expect(s.description == "m@tcp://127.0.0.1:2,tcp://127.0.0.1:3")
        #expect(try ref.slice(0..<0).hosts.isEmpty)
        #expect(throws: HostMeshRefError.self) { try ref.slice(2..<4) }
    }
}

@Suite("Host-mesh messages")
struct HostMeshMessageTests {
    @Test("every message survives an envelope")
    func codec() throws {
        let command = BootstrapCommand(program: "/bin/x", arguments: ["-v"], environment: ["K": "V"])
        let messages: [HostMeshMessage] = [
            .installConfig(ConfigSnapshot(["a": "1", "b": "2"])),
            .configInstalled(digest: 42),
            .spawn(SpawnRequest(mesh: "m", procs: [ProcSpec(rank: 3, command: command)],
                                worldSize: 4, hostRank: 1, clientAddress: .tcp(host: "::1", port: 9))),
            .spawnRefused(mesh: "m", rank: 0, refusal: .programNotAllowed(program: "sh", resolved: "/usr/bin/sh")),
            .procState(ProcStatus(mesh: "m", rank: 1, state: .stopped(exitCode: 1, stderrTail: ["boom"]), pid: 77)),
            .procState(ProcStatus(mesh: "m", rank: 1, state: .killed(signal: 9))),
            .states(mesh: "m", [ProcStatus(mesh: "m", rank: 0, state: .failed(reason: "x"))]),
            .info(AgentInfo(address: .unix(path: "/tmp/s"), pid: 1, configDigest: nil, procs: [])),
            .procHello(ProcHello(mesh: "m", rank: 2, pid: 5, token: "t0k")),
            .procState(ProcStatus(mesh: "m", rank: 1, state: .hostLost(reason: "gone"), pid: 7, restarts: 2, stderrTail: ["x"])),
            .procDied(ProcDeath(status: ProcStatus(mesh: "m", rank: 0, state: .killed(signal: 9)), wasReady: true, restarting: true)),
            .procOutput(ProcOutput(mesh: "m", lines: [ProcLogLine(rank: 0, stream: .stderr, text: "é")], dropped: 3)),
            .spawn(SpawnRequest(mesh: "m", procs: [], worldSize: 0, hostRank: 0, clientAddress: nil,
                                restart: .onFailure(maxRestarts: 2, backoff: .milliseconds(250)), detached: true,
                                readiness: .started)),
            .spawnRefused(mesh: "m", rank: 0, refusal: .limitExceeded(.procsPerClient(requested: 5, live: 1, limit: 4))),
            .stopAccepted(mesh: "m", states: []),
            .readLogs(mesh: "m", detached: true, follow: false),
            .endSession,
            .failure("nope"),
        ]
        for m in messages {
            let e = m.envelope(correlation: 7, response: true)
            #expect(e.protocolTag == .hostMesh)
            #expect(e.kind == m.kind)
            #expect(e.flags.contains(.response))
            #expect(try HostMeshMessage(envelope: e) == m)
        }
    }

    @Test("garbage payloads and foreign protocols are typed errors")
    func garbage() {
        var e = HostMeshMessage.agentInfo.envelope()
        e.payload = [0xff, 0x00, 0x7b]
        #expect(throws: HostMeshProtocolError.self) { try HostMeshMessage(envelope: e) }
        e = HostMeshMessage.agentInfo.envelope()
        e.protocolTag = .runner
        #expect(throws: HostMeshProtocolError.self) { try HostMeshMessage(envelope: e) }
    }

    @Test("config digests are stable and order independent")
    func digest() {
        let a = ConfigSnapshot(["x": "1", "y": "2"])
        var b = ConfigSnapshot()
        b["y"] = "2"
        b["x"] = "1"
        #expect(a.digest == b.digest)
        #expect(a.digest != ConfigSnapshot(["x": "12"]).digest)
        #expect(ConfigSnapshot(["x": "1y"]).digest != ConfigSnapshot(["x1": "y"]).digest)
        #expect(ConfigSnapshot(["": "1"]).problem != nil)
        #expect(ConfigSnapshot(["a=b": "1"]).problem != nil)
        #expect(a.problem == nil)
    }
}
