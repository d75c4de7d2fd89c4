import Logging
import Testing
import SpindleEventLoop
import SpindleKernel
import SpindleTCP
import Synchronization
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

/// The built `spindle` executable: `SPINDLE_BIN`, or next to the test bundle
/// (`.build/<config>/spindle` beside `.build/<config>/SpindlePackageTests.xctest`).
func spindleBinary() throws -> String {
    if let p = getenv("SPINDLE_BIN").map({ String(cString: $0) }), access(p, X_OK) == 0 { return p }
    guard let exe = ProgramAllowList.executablePath() else {
        throw TestFailure("cannot resolve /proc/self/exe")
    }
    var dir = exe
    // The bundle may be a directory (…/X.xctest/…) on some layouts: walk up to `.build/<config>`.
    while let slash = dir.lastIndex(of: "/"), !dir.isEmpty {
        dir = String(dir[..<slash])
        let candidate = dir + "/spindle"
        if access(candidate, X_OK) == 0 { return candidate }
        if dir.hasSuffix("/.build") { break }
    }
    throw TestFailure("no spindle executable next to \(exe); run `swift build --build-tests` (or set SPINDLE_BIN)")
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Waits (polling every few milliseconds) until `condition` holds; fails after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () async -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !(await condition()) {
        guard clock.now < deadline else { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// True while `pid` names a process that is not a zombie.
func isAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let f = fopen("/proc/\(pid)/stat", "r") else { return false }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 512)
    guard fgets(&buf, 512, f) != nil else { return false }
    let line = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // "pid (comm) S ..." — the state follows the last ')'.
    guard let close = line.lastIndex(of: ")") else { return true }
    let state = line[line.index(after: close)...].drop { $0 == " " }.first
    return state != "Z" && state != "X"
}

/// A fresh private directory under /tmp.
func makeTempDirectory() throws -> String {
    var template = Array("/tmp/spindle-hostmesh-XXXXXX".utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw TestFailure("mkdtemp failed")
    }
    return String(cString: p)
}

func readText(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func removeTree(_ path: String) {
    guard path.hasPrefix("/tmp/spindle-hostmesh-") else { return }
    if let d = opendir(path) {
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(d)
    }
    rmdir(path)
}

/// A loop, a TCP transport and `count` in-process agents on 127.0.0.1 port 0, torn down after
/// `body` whatever happens.
func withAgents<R>(_ count: Int, key: ClusterKey? = nil,
                   configure: (inout HostAgent.Configuration) -> Void = { _ in },
                   _ body: (EventLoop, any Transport, [HostAgent], [Address]) async throws -> R) async throws -> R {
    let loop = try EventLoop(name: "hostmesh-test")
    let transport = makeTransport(loop: loop, key: key)
    var agents: [HostAgent] = []
    var addresses: [Address] = []
    do {
        for _ in 0..<count {
            var c = HostAgent.Configuration()
            c.listenAddress = .tcp(host: "127.0.0.1", port: 0)
            c.allowedPrograms = [try spindleBinary(), "false", "sh"]
            c.stopGrace = .seconds(2)
            c.forwardProcStdout = false
            c.transportAuthenticates = key != nil
            c.logger.logLevel = .warning
            configure(&c)
            let agent = HostAgent(on: loop, transport: transport, configuration: c)
            agents.append(agent)
            addresses.append(try await agent.start())
        }
        let r = try await body(loop, transport, agents, addresses)
        for a in agents { await a.shutdown() }
        await transport.shutdown()
        #expect(agents.allSatisfy { $0.procs().allSatisfy(\.state.isTerminal) })
        // Handles close asynchronously (uv_close callbacks): wait for them, with a deadline.
        do {
            try await waitUntil("every loop handle to close", timeout: .seconds(5)) { await loop.openHandleCount == 0 }
        } catch {
            Issue.record("agents and transport left \(await loop.openHandleCount) loop handles open")
        }
        await loop.shutdown()
        return r
    } catch {
        for a in agents { await a.shutdown() }
        await transport.shutdown()
        await loop.shutdown()
        throw error
    }
}

func makeTransport(loop: EventLoop, key: ClusterKey?) -> any Transport {
    var configuration = TCPTransport.Configuration()
    configuration.clusterKey = key
    return TCPTransport(loop: loop, configuration: configuration)
}

/// Client configuration with short idle timeouts (still generous for a loaded machine).
func testMeshConfiguration() -> HostMesh.Configuration {
    var c = HostMesh.Configuration()
    c.spawnIdleTimeout = .seconds(15)
    c.stopIdleTimeout = .seconds(15)
    c.stateIdleTimeout = .seconds(5)
    c.logger.logLevel = .warning
    return c
}
