import Foundation
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing

@Suite("ChildProcess")
struct ChildProcessTests {
    /// Reads a channel to its end and returns the text.
    static func readAll(_ channel: StreamChannel?) async throws -> String {
        guard let channel else { return "" }
        let sink = ByteSink()
        sink.start(channel)
        let error = try await sink.closed.wait(20, "end of \(channel.label)")
        #expect(error == nil)
        return String(decoding: sink.bytes, as: UTF8.self)
    }

    @Test("exit code is reported", arguments: [0, 3, 255])
    func exitCode(_ code: Int32) async throws {
        try await withLoop { loop in
            let child = try await ChildProcess.spawn(on: loop, ProcessOptions(executable: "/bin/sh", arguments: ["-c", "exit \(code)"]))
            #expect(child.pid > 0)
            let status = try await withTimeout(20, "exit") { await child.wait() }
            #expect(status == .exited(code: code))
            #expect(child.exitStatus == .exited(code: code))
        }
    }

    @Test("kill with SIGKILL gives .signaled(9); a second kill is ESRCH")
    func killSignal() async throws {
        try await withLoop { loop in
            var options = ProcessOptions(executable: "sleep", arguments: ["30"])
            options.stdin = .ignore
            options.stdout = .ignore
            options.stderr = .ignore
            let child = try await ChildProcess.spawn(on: loop, options)
            #expect(child.exitStatus == nil)
            let onExit = Promise<(SpindleEventLoop.ExitStatus, Bool)>()
            child.onExit { onExit.fulfil(($0, loop.inEventLoop)) }
            try child.kill(SIGKILL)
            let status = try await withTimeout(20, "exit") { await child.wait() }
            #expect(status == .signaled(signal: 9))
            let (handlerStatus, onLoop) = try await onExit.wait(10, "onExit")
            #expect(handlerStatus == .signaled(signal: 9))
            #expect(onLoop)
            #expect(throws: EventLoopError.noSuchProcess) { try child.kill(SIGTERM) }
        }
    }

    @Test("stdout and stderr are captured")
    func stdoutCapture() async throws {
        try await withLoop { loop in
            let child = try await ChildProcess.spawn(on: loop, ProcessOptions(
                executable: "/bin/sh", arguments: ["-c", "echo hello world; echo oops >&2; exit 0"]))
            async let out = Self.readAll(child.stdout)
            async let err = Self.readAll(child.stderr)
            #expect(try await out == "hello world\n")
            #expect(try await err == "oops\n")
            #expect(await child.wait() == .exited(code: 0))
        }
    }

    @Test("stdin flows through /bin/cat to stdout; closing stdin ends it")
    func stdinToStdout() async throws {
        try await withLoop { loop in
            let child = try await ChildProcess.spawn(on: loop, ProcessOptions(executable: "/bin/cat"))
            let payload = pattern(200_000, seed: 3)
            let sink = ByteSink()
            sink.start(try #require(child.stdout))
            let input = try #require(child.stdin)
            input.write(Array(payload[..<1000]))
            input.write(contentsOf: [Array(payload[1000..<50_000]), Array(payload[50_000...])])
            input.close()
            #expect(try await sink.closed.wait(20, "cat's EOF") == nil)
            #expect(sink.bytes == payload)
            #expect(try await withTimeout(20, "exit") { await child.wait() } == .exited(code: 0))
        }
    }

    @Test("writing to the stdin of an exited child reports EPIPE through onClose (no SIGPIPE)")
    func writeToExitedChild() async throws {
        try await withLoop { loop in
            var options = ProcessOptions(executable: "/bin/true")
            options.stdout = .ignore
            options.stderr = .ignore
            let child = try await ChildProcess.spawn(on: loop, options)
            #expect(try await withTimeout(20, "exit") { await child.wait() } == .exited(code: 0))
            let input = try #require(child.stdin)
            let closed = Promise<EventLoopError?>()
            input.start(onRead: { _ in }, onClose: { closed.fulfil($0) })
            input.write(pattern(100_000))
            let error = try await closed.wait(20, "stdin to close")
            #expect(error?.name == "EPIPE")
            #expect(error?.description.contains("stdin of process \(child.pid)") == true)
        }
    }

    @Test("environment and working directory are applied")
    func environmentAndDirectory() async throws {
        try await withTemporaryDirectory { dir in
            try await withLoop { loop in
                var options = ProcessOptions(executable: "sh", arguments: ["-c", "echo \"$SPINDLE_TEST_VAR\"; pwd -P; echo \"${HOME:-unset}\""])
                options.environment = ["SPINDLE_TEST_VAR": "forty two", "PATH": "/usr/bin:/bin"]
                options.workingDirectory = dir
                let child = try await ChildProcess.spawn(on: loop, options)
                let output = try await Self.readAll(child.stdout)
                let real = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
                #expect(output == "forty two\n\(real)\nunset\n")
                #expect(await child.wait() == .exited(code: 0))
            }
        }
    }

    @Test("a missing executable is a typed ENOENT naming it")
    func missingExecutable() async throws {
        try await withLoop { loop in
            for name in ["spindle-no-such-program", "/nonexistent/spindle-prog"] {
                do {
                    _ = try await ChildProcess.spawn(on: loop, ProcessOptions(executable: name))
                    Issue.record("spawned \(name)")
                } catch let error as EventLoopError {
                    #expect(error.name == "ENOENT")
                    #expect(error.description.contains(name))
                }
            }
            // Nothing was left open by the failed attempts.
            #expect(await loop.openHandleCount == 0)
        }
    }

    @Test("parentDeathSignal: the child dies with that signal when its loop shuts down")
    func parentDeathSignal() async throws {
        let loop = try EventLoop(name: "pdeath-loop")
        var options = ProcessOptions(executable: "sleep", arguments: ["60"])
        options.parentDeathSignal = SIGTERM
        options.stdin = .ignore
        options.stdout = .ignore
        options.stderr = .ignore
        let child = try await ChildProcess.spawn(on: loop, options)
        let pid = child.pid
        #expect(kill(pid, 0) == 0)
        await loop.shutdown()
        #expect(loop.closeStatus == 0)
        // The child is gone: poll for it with a deadline (an event wait, not a sleep-as-sync).
        let gone = try await withTimeout(20, "process \(pid) to disappear") {
            while kill(pid, 0) == 0 { try await Task.sleep(for: .milliseconds(5)) }
            return errno
        }
        #expect(gone == ESRCH)
        // SIGTERM, not the SIGKILL fallback: the parent-death signal did it.
        #expect(child.exitStatus == .signaled(signal: SIGTERM))
    }

    @Test("an unknown parentDeathSignal is rejected")
    func badParentDeathSignal() async throws {
        try await withLoop { loop in
            var options = ProcessOptions(executable: "/bin/true")
            options.parentDeathSignal = 99
            await #expect(throws: EventLoopError.self) { _ = try await ChildProcess.spawn(on: loop, options) }
        }
    }
}

@Suite("Signals and shutdown")
struct SignalAndShutdownTests {
    @Test("SignalWatcher receives a raised SIGUSR1 on the loop thread")
    func signalWatcher() async throws {
        try await withLoop { loop in
            let got = Promise<(Int32, Bool)>()
            let watcher = try await SignalWatcher.watch(on: loop, signals: [SIGUSR1]) { got.fulfil(($0, loop.inEventLoop)) }
            #expect(await loop.openHandleCount == 1)
            // Process-directed (kill, not raise): test threads block signals, the loop thread does not.
            kill(getpid(), SIGUSR1)
            let (signal, onLoop) = try await got.wait(10, "SIGUSR1")
            #expect(signal == SIGUSR1)
            #expect(onLoop)
            watcher.cancel()
            await loop.settle()
            #expect(await loop.openHandleCount == 0)
        }
    }

    @Test("shutdown after a busy run closes every handle and uv_loop_close succeeds")
    func busyShutdown() async throws {
        let loop = try EventLoop(name: "busy-loop")
        let serverSide = Mutex<[StreamChannel]>([])
        let listener = try await StreamListener.listen(on: loop, address: .tcp(host: "127.0.0.1", port: 0)) { ch in
            serverSide.withLock { $0.append(ch) }
            ch.start(onRead: { ch.write(Array($0)) }, onClose: { _ in })
        }
        // Connections with traffic, some left open.
        var sinks: [ByteSink] = []
        for i in 0..<40 {
            let client = try await StreamChannel.connect(on: loop, to: listener.address)
            let sink = ByteSink()
            sink.start(client)
            client.write(pattern(1000, seed: UInt8(i)))
            sinks.append(sink)
            if i % 2 == 0 {
                try await sink.wait(for: 1000)
                client.close()
            }
        }
        // A peer that never reads, with megabytes queued towards it.
        let stuck = try await StreamChannel.connect(on: loop, to: .tcp(host: "127.0.0.1", port: listener.address.port))
        let stuckSink = ByteSink()
        stuck.start(onRead: { _ in }, onClose: { stuckSink.close($0) })
        // Timers: fired, pending and repeating.
        let fired = Atomic<Int>(0)
        for i in 0..<100 { loop.scheduleTimer(after: .milliseconds(i % 2 == 0 ? 1 : 60_000)) { fired.add(1, ordering: .relaxed) } }
        let repeating = (0..<5).map { _ in loop.scheduleRepeating(every: .milliseconds(3)) {} }
        // Processes: finished and still running.
        var running: [ChildProcess] = []
        for i in 0..<6 {
            var options = ProcessOptions(executable: i % 2 == 0 ? "true" : "sleep", arguments: i % 2 == 0 ? [] : ["60"])
            options.stdin = .pipe
            let child = try await ChildProcess.spawn(on: loop, options)
            if i % 2 == 0 { _ = try await withTimeout(20, "true to exit") { await child.wait() } } else { running.append(child) }
        }
        let watcher = try await SignalWatcher.watch(on: loop, signals: [SIGUSR2]) { _ in }
        _ = watcher
        _ = repeating
        #expect(await loop.openHandleCount > 50)

        await loop.shutdown()
        #expect(loop.closeStatus == 0)
        #expect(await loop.openHandleCount == 0)
        for child in running {
            #expect(child.exitStatus == .signaled(signal: SIGKILL))
            #expect(kill(child.pid, 0) == -1)
        }
        // Every client channel reported its close.
        for sink in sinks { _ = try await sink.closed.wait(10, "client close") }
        _ = try await stuckSink.closed.wait(10, "stuck close")
        #expect(serverSide.withLock { $0.count } == 41)
    }
}

extension Address {
    var port: UInt16 {
        if case .tcp(_, let port) = self { return port }
        return 0
    }
}
