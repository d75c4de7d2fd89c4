import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The cluster suite's hosts: network namespaces made by scripts/testcluster (hosts spnI at
/// 10.77.0.I, this namespace at 10.77.0.254 on their bridge), the processes the suite started
/// in them, and a private directory for the cluster key. `down()` removes all of it.
final class BenchCluster: Sendable {
    struct Host: Sendable {
        let name: String
        let address: String
    }

    /// This namespace's address on the hosts' bridge.
    static let rootAddress = "10.77.0.254"

    let hosts: [Host]
    let directory: String
    let loop: EventLoop
    private let script: String
    private let started = Mutex<[LineReader]>([])

    private init(hosts: [Host], directory: String, loop: EventLoop, script: String) {
        self.hosts = hosts
        self.directory = directory
        self.loop = loop
        self.script = script
    }

    /// Creates `count` hosts with `script` (after removing any left from an earlier run).
    static func up(_ count: Int, script: String, loop: EventLoop) async throws -> BenchCluster {
        var template = Array("/tmp/spindle-bench-cluster-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw BenchClusterError("mkdtemp: \(String(cString: strerror(errno)))") }
        let directory = String(cString: dir)
        let cluster = BenchCluster(hosts: [], directory: directory, loop: loop, script: script)
        let out: String
        do {
            try await cluster.run([script, "down"])
            out = try await cluster.run([script, "up", "\(count)"])
        } catch {
            await cluster.down()
            throw error
        }
        let hosts = out.split(separator: "\n").compactMap { line -> Host? in
            let parts = line.split(separator: " ")
            return parts.count == 2 ? Host(name: String(parts[0]), address: String(parts[1])) : nil
        }
        guard hosts.count == count else {
            await cluster.down()
            throw BenchClusterError("\(script) up \(count) printed: \(out)")
        }
        return BenchCluster(hosts: hosts, directory: directory, loop: loop, script: script)
    }

    /// Runs `argv` to completion here; returns its stdout, throws with its exit status otherwise.
    @discardableResult
    func run(_ argv: [String]) async throws -> String {
        let reader = try await LineReader.spawn(argv, on: loop)
        let status = await reader.child.wait()
        let out = await reader.output()
        guard status == .exited(code: 0) else {
            throw BenchClusterError("\(argv.joined(separator: " ")) \(status): \(out)")
        }
        return out
    }

    /// Starts `argv(host)` inside every host's namespace; `down()` stops them.
    func startInEachHost(_ argv: (Host) -> [String]) async throws -> [LineReader] {
        var readers: [LineReader] = []
        for host in hosts {
            let reader = try await LineReader.spawn(["/usr/sbin/ip", "netns", "exec", host.name] + argv(host), on: loop,
                                                    parentDeathSignal: SIGKILL)
            started.withLock { $0.append(reader) }
            readers.append(reader)
        }
        return readers
    }

    /// Stops what the suite started (SIGTERM, then SIGKILL after 5 s), removes the hosts and
    /// the directory.
    func down() async {
        for reader in started.withLock({ $0 }) {
            try? reader.child.kill(SIGTERM)
            let status = await withTaskGroup(of: ExitStatus?.self) { group in
                group.addTask { await reader.child.wait() }
                group.addTask { try? await Task.sleep(for: .seconds(5)); return nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            if status == nil {
                try? reader.child.kill(SIGKILL)
                _ = await reader.child.wait()
            }
        }
        _ = try? await run([script, "down"])
        _ = try? await run(["/bin/rm", "-rf", directory])
    }
}

struct BenchClusterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A child process whose stdout is collected; `line(containing:)` waits for a line.
final class LineReader: Sendable {
    let child: ChildProcess
    private struct State {
        var text: [UInt8] = []
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    private init(child: ChildProcess) { self.child = child }

    static func spawn(_ argv: [String], on loop: EventLoop, parentDeathSignal: Int32? = nil) async throws -> LineReader {
        var options = ProcessOptions(executable: argv[0], arguments: Array(argv.dropFirst()))
        options.stdin = .ignore
        options.stderr = .inherit
        options.parentDeathSignal = parentDeathSignal
        let reader = LineReader(child: try await ChildProcess.spawn(on: loop, options))
        reader.child.stdout?.start(onRead: { bytes in
            let woken = reader.state.withLock { s in
                s.text.append(contentsOf: bytes)
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in woken { w.resume() }
        }, onClose: { _ in
            let woken = reader.state.withLock { s in
                s.closed = true
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in woken { w.resume() }
        })
        return reader
    }

    /// Everything written to stdout, once it closed.
    func output() async -> String {
        while true {
            let (text, closed, seen) = state.withLock { s in (s.text, s.closed, s.text.count) }
            if closed { return String(decoding: text, as: UTF8.self) }
            await changed(since: seen, closed: closed)
        }
    }

    /// The first stdout line containing `text`; throws when stdout closes first or after `timeout`.
    func line(containing text: String, timeout: Duration = .seconds(30)) async throws -> String {
        let deadline = SystemClock().now() + timeout
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            let woken = state.withLock { s in defer { s.waiters = [] }; return s.waiters }
            for w in woken { w.resume() }
        }
        defer { timer.cancel() }
        while true {
            let (bytes, closed) = state.withLock { s in (s.text, s.closed) }
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
            if let line = lines.first(where: { $0.contains(text) }) { return String(line) }
            if closed { throw BenchClusterError("\(child.executablePath) ended its output before a line with \"\(text)\"") }
            guard SystemClock().now() < deadline else {
                throw BenchClusterError("\(child.executablePath) printed no line with \"\(text)\" within \(timeout)")
            }
            await changed(since: bytes.count, closed: closed)
        }
    }

    /// Returns once more than `count` bytes arrived or stdout closed (at once if that already
    /// happened), or a timer woke every waiter.
    private func changed(since count: Int, closed: Bool) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.text.count != count || s.closed != closed { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}
