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

/// Waits (polling every `interval`) until `condition` holds; fails after `timeout`. Conditions
/// that scan /proc poll less often, so they do not keep a thread of the cooperative pool busy.
func waitUntil(_ what: String, timeout: Duration = .seconds(10), every interval: Duration = .milliseconds(10),
               _ condition: () async -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !(await condition()) {
        guard clock.now < deadline else { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: interval)
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
            c.livenessBound = .seconds(60)   // tests about liveness set their own
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
    c.livenessBound = .seconds(60)   // tests about liveness set their own
    c.logger.logLevel = .warning
    return c
}

/// Waits for the first element of `sequence` that `match` accepts; fails after `timeout`.
func firstEvent<S: AsyncSequence & Sendable, T: Sendable>(
    _ sequence: S, _ what: String, timeout: Duration = .seconds(30),
    _ match: @escaping @Sendable (S.Element) -> T?
) async throws -> T where S.Element: Sendable {
    let found = await withTaskGroup(of: T?.self) { group in
        group.addTask {
            do {
                for try await e in sequence {
                    if let t = match(e) { return t }
                }
            } catch {}
            return nil
        }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
    guard let found else { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
    return found
}

/// A process seen in /proc: its pid, process group and state letter.
struct SeenProcess: Sendable, Hashable {
    var pid: Int32
    var pgid: Int32
    var command: String
}

/// Every live (not zombie) process whose environment holds `tag` (`SPINDLE_TEST_TAG=<tag>`):
/// the procs a test started and everything they started, grandchildren included, since the
/// environment is inherited. Scans /proc (readable: tests run as root).
func taggedProcesses(_ tag: String) -> [SeenProcess] {
    let needle = Array("SPINDLE_TEST_TAG=\(tag)".utf8)
    var out: [SeenProcess] = []
    guard let dir = opendir("/proc") else { return [] }
    defer { closedir(dir) }
    while let e = readdir(dir) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let pid = Int32(name), isAlive(pid) else { continue }
        guard let env = readBytes("/proc/\(pid)/environ") else { continue }
        let entries = env.split(separator: 0)
        guard entries.contains(where: { Array($0) == needle }) else { continue }
        guard let stat = readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields: state, ppid, pgrp, …
        guard fields.count > 2, let pgid = Int32(fields[2]) else { continue }
        let cmd = (readBytes("/proc/\(pid)/cmdline") ?? []).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        out.append(SeenProcess(pid: pid, pgid: pgid, command: cmd.joined(separator: " ")))
    }
    return out
}

/// Every live process in one of `groups`.
func processesInGroups(_ groups: Set<Int32>) -> [Int32] {
    var out: [Int32] = []
    guard let dir = opendir("/proc") else { return [] }
    defer { closedir(dir) }
    while let e = readdir(dir) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let pid = Int32(name), isAlive(pid) else { continue }
        let pgid = getpgid(pid)
        if pgid > 0, groups.contains(pgid) { out.append(pid) }
    }
    return out
}

func readBytes(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

/// A fresh tag for `taggedProcesses`.
func newTag() -> String { String(UInt64.random(in: 1 ... .max), radix: 16) }

/// Open descriptors of a process (entries of /proc/<pid>/fd).
func openDescriptors(_ pid: Int32) -> Int {
    guard let d = opendir("/proc/\(pid)/fd") else { return -1 }
    defer { closedir(d) }
    var n = 0
    while readdir(d) != nil { n += 1 }
    return n - 2
}

/// Resident set size of a process in KiB (VmRSS of /proc/<pid>/status).
func residentKiB(_ pid: Int32) -> Int {
    guard let text = readText("/proc/\(pid)/status") else { return -1 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
    }
    return -1
}
