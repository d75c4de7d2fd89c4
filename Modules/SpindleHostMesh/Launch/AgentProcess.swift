import Logging
import SpindleEventLoop
import SpindleKernel
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process that ends up running `spindle host-agent` (directly, or through ssh): waits
/// for its `spindle host-agent listening on ADDRESS` line, forwards its stderr to a logger,
/// and stops it by closing its standard input (the agent runs with `--exit-on-stdin-close`),
/// then SIGTERM, then SIGKILL.
final class AgentProcess: Sendable {
    let host: String
    let child: ChildProcess
    private let lines = Mutex<(buffer: [UInt8], address: Address?, stderrTail: [String], waiters: [CheckedContinuation<Void, Never>], ended: Bool)>(([], nil, [], [], false))
    private let logger: Logger

    /// The line an agent prints once it listens.
    static let listeningPrefix = "spindle host-agent listening on "

    private init(host: String, child: ChildProcess, logger: Logger) {
        self.host = host
        self.child = child
        var l = logger
        l[metadataKey: "host"] = "\(host)"
        self.logger = l
    }

    /// Spawns `executable arguments` on `loop` and waits (up to `timeout`) for the agent's
    /// listening line.
    static func start(host: String, executable: String, arguments: [String], loop: EventLoop,
                      timeout: Duration, logger: Logger) async throws(LaunchError) -> (AgentProcess, Address) {
        var options = ProcessOptions(executable: executable, arguments: arguments)
        options.stdin = .pipe
        options.stdout = .pipe
        options.stderr = .pipe
        let child: ChildProcess
        do {
            child = try await ChildProcess.spawn(on: loop, options)
        } catch {
            throw LaunchError(host: host, problem: "cannot run \(executable): \(error)")
        }
        let agent = AgentProcess(host: host, child: child, logger: logger)
        agent.readOutput()
        let ready = await agent.waitForAddress(timeout: timeout)
        if let address = ready { return (agent, address) }
        let tail = agent.stderrTail.suffix(5).joined(separator: " | ")
        await agent.stop(grace: .seconds(2))
        let status = child.exitStatus.map { " (\($0))" } ?? ""
        throw LaunchError(host: host, problem: "no `listening on` line within \(timeout)\(status)"
                          + (tail.isEmpty ? "" : "; it said: \(tail)"))
    }

    var stderrTail: [String] { lines.withLock { $0.stderrTail } }

    private func readOutput() {
        child.stdout?.start(onRead: { [self] bytes in
            let found: [String] = lines.withLock { s in
                s.buffer.append(contentsOf: bytes)
                var out: [String] = []
                while let nl = s.buffer.firstIndex(of: 10) {
                    out.append(String(decoding: s.buffer[..<nl], as: UTF8.self))
                    s.buffer.removeSubrange(...nl)
                }
                if s.buffer.count > 64 << 10 { s.buffer.removeAll() }   // no line that long is ours
                return out
            }
            for line in found { stdoutLine(line) }
        }, onClose: { [self] _ in finish() })
        let partial = Mutex<[UInt8]>([])
        child.stderr?.start(onRead: { [self] bytes in
            let found: [String] = partial.withLock { b in
                b.append(contentsOf: bytes)
                var out: [String] = []
                while let nl = b.firstIndex(of: 10) {
                    out.append(String(decoding: b[..<nl], as: UTF8.self))
                    b.removeSubrange(...nl)
                }
                if b.count > 64 << 10 { b.removeAll() }
                return out
            }
            for line in found where !line.isEmpty {
                logger.info("\(line)")
                lines.withLock { s in
                    s.stderrTail.append(line)
                    if s.stderrTail.count > 20 { s.stderrTail.removeFirst() }
                }
            }
        }, onClose: { _ in })
    }

    private func stdoutLine(_ line: String) {
        guard let at = line.firstRange(of: Self.listeningPrefix) else {
            if !line.isEmpty { logger.info("\(line)") }
            return
        }
        let text = String(line[at.upperBound...].filter { $0 != " " && $0 != "\r" })
        guard let address = try? Address(parsing: text) else {
            logger.warning("unparsable listen line", metadata: ["line": "\(line)"])
            return
        }
        let waiters = lines.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.address = address
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    private func finish() {
        let waiters = lines.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.ended = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    private func waitForAddress(timeout: Duration) async -> Address? {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = self.lines.withLock { s -> Bool in
                        if s.address != nil || s.ended { return true }
                        s.waiters.append(c)
                        return false
                    }
                    if now { c.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            self.finishWaitersIfAny()
        }
        return lines.withLock { $0.address }
    }

    private func finishWaitersIfAny() {
        let waiters = lines.withLock { s -> [CheckedContinuation<Void, Never>] in
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    /// Stops the agent: closes its stdin (a graceful stop), then SIGTERM after `grace`, then
    /// SIGKILL after another `grace`.
    func stop(grace: Duration) async {
        child.stdin?.close()
        if await exited(within: grace) { return }
        try? child.kill(SIGTERM)
        if await exited(within: grace) { return }
        try? child.kill(SIGKILL)
        _ = await child.wait()
    }

    private func exited(within limit: Duration) async -> Bool {
        let pending = Mutex(true)
        return await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let finish: @Sendable (Bool) -> Void = { exited in
                if pending.withLock({ p -> Bool in defer { p = false }; return p }) { c.resume(returning: exited) }
            }
            child.onExit { _ in finish(true) }
            Task {
                try? await Task.sleep(for: limit)
                finish(false)
            }
        }
    }
}
