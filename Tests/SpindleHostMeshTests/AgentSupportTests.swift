import Testing
import SpindleKernel
@testable import SpindleHostMesh

@Suite("Agent support: allow list, stderr tail, proc environment")
struct AgentSupportTests {
    @Test("the allow list compares real paths and refuses everything else")
    func allowList() throws {
        let list = ProgramAllowList(programs: ["sh", "/bin/../bin/true", "/no/such/program"])
        #expect(list.unresolved == ["/no/such/program"])
        let sh = try list.check("sh")
        #expect(sh.hasPrefix("/"))
        #expect(try list.check("true") == list.check("/bin/true"))
        #expect(throws: SpawnRefusal.programNotFound(program: "no-such-program-xyz")) { try list.check("no-such-program-xyz") }
        do {
            _ = try list.check("false")
            Issue.record("false was allowed")
        } catch {
            guard case .programNotAllowed("false", let resolved) = error else { Issue.record("wrong error \(error)"); return }
            #expect(resolved.hasSuffix("/false"))
        }
        let own = ProgramAllowList.ownExecutable()
        #expect(own.realPaths.count == 1)
        #expect(throws: SpawnRefusal.self) { try own.check("sh") }
    }

    @Test("the stderr tail keeps the last lines, bounded")
    func tail() {
        var t = TailBuffer(maxLines: 2)
        for l in ["a", "b", "c"] { t.append(l) }
        #expect(t.tail == ["b", "c"])
        var none = TailBuffer(maxLines: 0)
        none.append("x")
        #expect(none.tail.isEmpty)
    }

    @Test("the proc environment round-trips and names a missing or bad variable")
    func environment() throws {
        let env = ProcEnvironment(mesh: "w", rank: 5, worldSize: 8, hostRank: 2, localRank: 1,
                                  agentAddress: .tcp(host: "::1", port: 7100), clientAddress: .unix(path: "/tmp/c.sock"),
                                  keyFile: "/etc/spindle.key")
        #expect(env.variables["SPINDLE_RANK"] == "5")
        #expect(env.variables["SPINDLE_AGENT_ADDR"] == "tcp://[::1]:7100")
        #expect(try ProcEnvironment(environment: env.variables) == env)
        var missing = env.variables
        missing["SPINDLE_RANK"] = nil
        #expect(throws: ProcEnvironmentError(variable: "SPINDLE_RANK", problem: "not set")) {
            try ProcEnvironment(environment: missing)
        }
        var bad = env.variables
        bad["SPINDLE_RANK"] = "9"
        #expect(throws: ProcEnvironmentError.self) { try ProcEnvironment(environment: bad) }
        bad = env.variables
        bad["SPINDLE_AGENT_ADDR"] = "tcp://nowhere"
        do {
            _ = try ProcEnvironment(environment: bad)
            Issue.record("bad address accepted")
        } catch {
            #expect(error.variable == "SPINDLE_AGENT_ADDR")
        }
    }
}
