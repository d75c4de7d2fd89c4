import SpindleEventLoop
import SpindleKernel
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A process started inside a test host (or anywhere), whose stdout lines the test can wait
/// for; closing its stdin asks it to stop (the fixtures and `--exit-on-stdin-close` agents).
final class LineProcess: Sendable {
    let child: ChildProcess
    private let state = Mutex<(partial: [UInt8], lines: [String], stderr: [String], waiters: [CheckedContinuation<Void, Never>])>(([], [], [], []))

    init(on loop: EventLoop, _ argv: [String]) async throws {
        var options = ProcessOptions(executable: argv[0], arguments: Array(argv.dropFirst()))
        options.stderr = .pipe
        child = try await ChildProcess.spawn(on: loop, options)
        child.stdout?.start(onRead: { [self] bytes in
            let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.partial.append(contentsOf: bytes)
                while let nl = s.partial.firstIndex(of: 10) {
                    s.lines.append(String(decoding: s.partial[..<nl], as: UTF8.self))
                    s.partial.removeSubrange(...nl)
                }
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in woken { w.resume() }
        }, onClose: { [self] _ in
            let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in defer { s.waiters = [] }; return s.waiters }
            for w in woken { w.resume() }
        })
        child.stderr?.start(onRead: { [self] bytes in
            state.withLock { $0.stderr.append(String(decoding: bytes, as: UTF8.self)) }
        }, onClose: { _ in })
    }

    var lines: [String] { state.withLock { $0.lines } }
    var stderrText: String { state.withLock { $0.stderr.joined() } }

    /// Waits for a stdout line containing `text`; returns it.
    func line(containing text: String, timeout: Duration = .seconds(30)) async throws -> String {
        let deadline = SystemClock().now() + timeout
        while true {
            if let l = lines.first(where: { $0.contains(text) }) { return l }
            if child.exitStatus != nil {
                throw ClusterTestError("\(child.executablePath) exited (\(child.exitStatus!)) before printing \"\(text)\": \(stderrText)")
            }
            guard SystemClock().now() < deadline else {
                throw ClusterTestError("no line with \"\(text)\" within \(timeout); stderr: \(stderrText)")
            }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                state.withLock { $0.waiters.append(c) }
                Task {
                    try? await Task.sleep(for: .milliseconds(100))
                    let w = state.withLock { s -> [CheckedContinuation<Void, Never>] in defer { s.waiters = [] }; return s.waiters }
                    for x in w { x.resume() }
                }
            }
        }
    }

    /// Closes stdin, then SIGTERM and SIGKILL if it lingers; returns once it exited.
    func stop() async {
        child.stdin?.close()
        for signal in [SIGTERM, SIGKILL] {
            let deadline = SystemClock().now() + .seconds(5)
            while child.exitStatus == nil && SystemClock().now() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            if child.exitStatus != nil { break }
            try? child.kill(signal)
        }
        _ = await child.wait()
    }
}

/// A TCP proxy that holds every chunk `delay` before forwarding it, both ways, in order: the
/// latency `tc netem` would add (this kernel has no netem).
final class DelayingProxy: Sendable {
    let listener: StreamListener
    let upstream: Address
    let delay: Duration
    private let channels = Mutex<[StreamChannel]>([])
    private let accepted = Mutex(0)

    var address: Address { listener.address }
    /// How many connections the proxy accepted.
    var connectionsAccepted: Int { accepted.withLock { $0 } }

    private init(listener: StreamListener, upstream: Address, delay: Duration) {
        self.listener = listener
        self.upstream = upstream
        self.delay = delay
    }

    static func start(on loop: EventLoop, listen: Address, upstream: Address, delay: Duration) async throws -> DelayingProxy {
        let box = Mutex<DelayingProxy?>(nil)
        let listener = try await StreamListener.listen(on: loop, address: listen) { client in
            guard let proxy = box.withLock({ $0 }) else { client.close(); return }
            proxy.accepted(client, loop: loop)
        }
        let proxy = DelayingProxy(listener: listener, upstream: upstream, delay: delay)
        box.withLock { $0 = proxy }
        return proxy
    }

    func close() {
        listener.close()
        for c in channels.withLock({ $0 }) { c.close() }
    }

    private func accepted(_ client: StreamChannel, loop: EventLoop) {
        channels.withLock { $0.append(client) }
        accepted.withLock { $0 += 1 }
        let upstream = self.upstream, delay = self.delay
        Task {
            guard let server = try? await StreamChannel.connect(on: loop, to: upstream) else {
                client.close()
                return
            }
            self.channels.withLock { $0.append(server) }
            // Timers of one delay on one loop fire in the order they were set: order is kept.
            client.start(onRead: { bytes in
                let chunk = Array(bytes)
                loop.scheduleTimer(after: delay) { server.write(chunk) }
            }, onClose: { _ in loop.scheduleTimer(after: delay) { server.close() } })
            server.start(onRead: { bytes in
                let chunk = Array(bytes)
                loop.scheduleTimer(after: delay) { client.write(chunk) }
            }, onClose: { _ in loop.scheduleTimer(after: delay) { client.close() } })
        }
    }
}
