// The complete example of docs/actors.md, compiled and run. Its `Counter` is in the
// ActorFixtureActors module (verbatim): the procs run the fixture executable, which
// registers it with `ActorHost.runIfActorHost`.
import ActorFixtureActors
import Spindle
import Testing

// MARK: docs/actors.md example (client side; keep in sync)

func countOnTwoProcs(agents: [Address], program: String) async throws -> [Int] {
    let tcp = try TCPTransport(loopCount: 1)
    let system = try await SpindleActorSystem(transport: tcp,
        configuration: .init(listenAddress: .tcp(host: "127.0.0.1", port: 0)))
    var meshConfig = HostMesh.Configuration()
    meshConfig.clientAddress = system.address              // the procs register here
    let hosts = try await HostMesh.attach(name: "demo", hosts: agents, config: ConfigSnapshot(),
                                          transport: tcp, configuration: meshConfig)
    let procs = try await hosts.spawnProcs(name: "counters", perHost: 1) { _ in
        BootstrapCommand(program: program)                   // runs ActorHost.runIfActorHost
    }
    let counters = try await procs.spawnActors(Counter.self, name: "counters") { rank in rank * 100 }
    let firsts = await counters.call { try await $0.add(1) }          // one Result per rank
    let last = try await withDeadline(.seconds(2)) { try await counters[1].add(10) }
    try await procs.stop()
    await hosts.shutdown()
    await system.shutdown()
    await tcp.shutdown()
    return try firsts.map { try $0.get() } + [last]      // [1, 101, 111]
}

// MARK: -

@Suite("docs/actors.md example")
struct DocExampleTests {
    @Test("the page's first Swift block is this code (and the fixture's Counter), under 40 lines")
    func pageMatchesCode() throws {
        let here = String(#filePath)
        let testDir = here[..<here.lastIndex(of: "/")!]
        let root = testDir[..<testDir.dropLast().lastIndex(of: "/")!].dropLast("/Tests".count)
        guard let page = readText("\(root)/docs/actors.md"),
              let fixture = readText("\(root)/Tests/Fixtures/ActorFixtureActors/FixtureActors.swift"),
              let mine = readText(here) else { throw TestFailure("cannot read the page or the sources under \(root)") }
        let blocks = page.parts(separatedBy: "```swift\n").dropFirst().map { $0.parts(separatedBy: "\n```")[0] }
        let example = try #require(blocks.first)
        #expect(example.split(separator: "\n", omittingEmptySubsequences: false).count < 40)
        let known = Set((mine + "\n" + fixture).split(separator: "\n").map { line -> String in
            var t = String(line).trimmed
            if t.hasPrefix("public ") { t.removeFirst("public ".count) }
            return t
        })
        for line in example.split(separator: "\n") {
            let code = String(line).trimmed
            if code.isEmpty || code.hasPrefix("import ") || code.hasPrefix("//") { continue }
            #expect(known.contains(code), "docs/actors.md line not in the tested code: \(code)")
        }
        // The proc side the page names exists with that signature.
        let _: ([any MeshActor.Type]) -> Void = ActorHost.runIfActorHost(registering:)
    }

    @Test("the example runs on two agents and counts on both procs")
    func example() async throws {
        let program = try builtExecutable("ActorPeerFixture")
        let loop = try EventLoop(name: "doc-agents")
        let agentTransport = TCPTransport(loop: loop)
        var agents: [HostAgent] = []
        func tearDown() async {
            for a in agents { await a.shutdown() }
            await agentTransport.shutdown()
            await loop.shutdown()
        }
        do {
            var addresses: [Address] = []
            for _ in 0..<2 {
                var c = HostAgent.Configuration()
                c.listenAddress = .tcp(host: "127.0.0.1", port: 0)
                c.allowedPrograms = [program]
                c.forwardProcStdout = false
                c.logger.logLevel = .warning
                let agent = HostAgent(on: loop, transport: agentTransport, configuration: c)
                agents.append(agent)
                addresses.append(try await agent.start())
            }
            #expect(try await countOnTwoProcs(agents: addresses, program: program) == [1, 101, 111])
        } catch {
            await tearDown()
            throw error
        }
        await tearDown()
    }
}
