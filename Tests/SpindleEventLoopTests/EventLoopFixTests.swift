import CLibUV
import Foundation
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing

/// Regression tests for the event-loop fixes of issue 15: init failures, signals to reaped
/// children, shutdown with live children, accepted connections spread over a group.
@Suite("Event loop fixes")
struct EventLoopFixTests {
    // MARK: init failure

    @Test("EventLoop init out of descriptors (RLIMIT_NOFILE 64, in a child) throws typed EMFILE, frees once, leaks nothing")
    func initFailureUnderLowDescriptorLimit() async throws {
        let fixture = try #require(Fixture.path, "EventLoopFixture not built next to the test binary")
        let run = try await Fixture.run([fixture, "nofile"])
        #expect(run.status == .exited(code: 0), "fixture output:\n\(run.output)")
        #expect(run.output.contains("OK:"), "fixture output:\n\(run.output)")
        #expect(run.output.contains("EMFILE"))
    }

    // MARK: kill after exit

    @Test("kill after the exit was reported throws ESRCH, for any signal")
    func killAfterReportedExit() async throws {
        try await withLoop { loop in
            let child = try await ChildProcess.spawn(on: loop, Fixture.quiet("/bin/true"))
            #expect(try await withTimeout(20, "exit") { await child.wait() } == .exited(code: 0))
            for signal: Int32 in [0, SIGTERM, SIGKILL] {
                #expect(throws: EventLoopError.noSuchProcess) { try child.kill(signal) }
            }
            // Also from the loop thread.
            let onLoop = try await loop.submit { () -> EventLoopError? in
                do throws(EventLoopError) { try child.kill(SIGTERM); return nil } catch { return error }
            }
            #expect(onLoop == .noSuchProcess)
        }
    }

    @Test("kill, from an exit handler, of a child reaped in the same pass whose pid another process got signals nothing",
          arguments: ["pidfd", "no-pidfd"])
    func killAfterReapWithPidReused(_ variant: String) async throws {
        // Needs a pid namespace of its own (to hand the reaped pid to a new process on purpose).
        guard getuid() == 0, access("/usr/bin/unshare", X_OK) == 0 else {
            try Test.cancel("needs root and /usr/bin/unshare for a private pid namespace")
        }
        let fixture = try #require(Fixture.path, "EventLoopFixture not built next to the test binary")
        let run = try await Fixture.run(["/usr/bin/unshare", "--pid", "--fork", fixture, "pid-reuse"]
                                        + (variant == "no-pidfd" ? ["no-pidfd"] : []))
        if run.status == .exited(code: 3) {
            try Test.cancel("could not arrange pid reuse: \(run.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        #expect(run.status == .exited(code: 0), "fixture output:\n\(run.output)")
        #expect(run.output.contains("OK: ") && run.output.contains("ESRCH"), "fixture output:\n\(run.output)")
    }

    @Test("without a pidfd (kernels before 5.3) kill from another thread is sent on the loop thread")
    func killWithoutPidfd() async throws {
        let fixture = try #require(Fixture.path, "EventLoopFixture not built next to the test binary")
        let run = try await Fixture.run([fixture, "no-pidfd-kill"])
        #expect(run.status == .exited(code: 0), "fixture output:\n\(run.output)")
        #expect(run.output.contains("OK:"), "fixture output:\n\(run.output)")
    }

    // MARK: shutdown with a live child

    @Test("shutdown with a live child keeps the loop thread running until libuv reaps the killed child",
          .enabled(if: getuid() == 0 && access("/usr/bin/strace", X_OK) == 0,
                   "needs root and strace to hold a killed child's exit"))
    func shutdownWithLiveChildDoesNotBlock() async throws {
        // A stopped tracer keeps the kernel from reporting the killed child's exit to us. A
        // blocking waitpid on the loop thread would hang there, and nothing else of the
        // shutdown (the child's stdout closing) could run until the tracer lets go.
        let helper = try EventLoop(name: "tracer-loop")
        let loop = try EventLoop(name: "child-loop")
        var tracer: ChildProcess?
        do {
            var options = Fixture.quiet("/bin/sleep", ["60"])
            options.stdout = .pipe
            let child = try await ChildProcess.spawn(on: loop, options)
            let stdout = ByteSink()
            stdout.start(try #require(child.stdout))
            let strace = try await ChildProcess.spawn(
                on: helper, Fixture.quiet("/usr/bin/strace", ["-p", "\(child.pid)", "-o", "/dev/null"]))
            tracer = strace
            // Attached, and the child running again (strace stops it briefly to attach).
            try await Fixture.waitUntil("strace to attach to \(child.pid)") {
                (Fixture.procField(child.pid, "TracerPid") == "\(strace.pid)"
                    && Fixture.procField(child.pid, "State")?.hasPrefix("S") == true)
                    || strace.exitStatus != nil
            }
            if let status = strace.exitStatus { try Test.cancel("strace could not attach (\(status))") }
            try strace.kill(SIGSTOP)
            try await Fixture.waitUntil("strace to stop") { Fixture.procField(strace.pid, "State")?.hasPrefix("T") == true }

            let shutdown = Task { await loop.shutdown() }
            // `within`, not `wait`: on a blocked loop thread this would never return to be cancelled.
            let closed = try await Fixture.within(10, "the child's stdout to close during shutdown") {
                try await stdout.closed.wait(60, "the child's stdout to close")
            }
            #expect(closed == nil)
            // Killed: it stops at its exit for the tracer ("t", strace traces exits) or is a zombie.
            try await Fixture.waitUntil("the child to be killed") {
                guard let state = Fixture.procField(child.pid, "State") else { return false }
                return state.hasPrefix("t") || state.hasPrefix("Z")
            }
            #expect(child.exitStatus == nil, "the exit is held by the tracer")

            try strace.kill(SIGKILL)   // detaching hands the exit to us: libuv reaps the child
            try await withTimeout(20, "shutdown after the tracer let go") { await shutdown.value }
            #expect(child.exitStatus == .signaled(signal: SIGKILL))
            #expect(spindle_child_state(child.pid) == -ECHILD, "the child is reaped")
            #expect(loop.closeStatus == 0)
            #expect(await loop.openHandleCount == 0)
            _ = try await withTimeout(20, "tracer exit") { await strace.wait() }
            await helper.shutdown()
        } catch {
            // Let go of the child so a blocked shutdown can finish, then clean up.
            try? tracer?.kill(SIGKILL)
            _ = try? await Fixture.within(20, "cleanup") { await loop.shutdown() }
            await helper.shutdown()
            throw error
        }
    }

    @Test("shutdown kills and reaps a running child and reports its exit")
    func shutdownReapsRunningChild() async throws {
        let loop = try EventLoop(name: "reap-loop")
        let child = try await ChildProcess.spawn(on: loop, Fixture.quiet("/bin/sleep", ["60"]))
        let reported = Promise<SpindleEventLoop.ExitStatus>()
        child.onExit { reported.fulfil($0) }
        try await withTimeout(20, "shutdown") { await loop.shutdown() }
        #expect(child.exitStatus == .signaled(signal: SIGKILL))
        #expect(try await reported.wait(5, "onExit") == .signaled(signal: SIGKILL))
        #expect(spindle_child_state(child.pid) == -ECHILD, "the child is reaped")
        #expect(loop.closeStatus == 0)
        #expect(await loop.openHandleCount == 0)
    }

    // MARK: accepted connections over a group

    @Test("a listener with a 2-loop child group puts accepted connections on both loops, round robin")
    func acceptedConnectionsSpreadOverGroup() async throws {
        let group = try EventLoopGroup(loopCount: 2, namePrefix: "spread")
        let accepted = Mutex<[(channel: StreamChannel, onItsLoop: Bool)]>([])
        let allAccepted = Promise<Void>()
        let count = 4
        do {
            let listener = try await StreamListener.listen(
                on: group.loops[0], address: .tcp(host: "127.0.0.1", port: 0), childGroup: group) { channel in
                // Echo, so each accepted channel is shown to work on its new loop.
                channel.start(onRead: { channel.write(Array($0)) }, onClose: { _ in channel.close() })
                let n = accepted.withLock { a in
                    a.append((channel, channel.loop.inEventLoop))
                    return a.count
                }
                if n == count { allAccepted.fulfil(()) }
            }
            var clients: [(StreamChannel, ByteSink)] = []
            for i in 0..<count {
                let client = try await StreamChannel.connect(on: group.loops[1], to: listener.address)
                let sink = ByteSink()
                sink.start(client)
                client.write(Array("hello \(i)".utf8))
                clients.append((client, sink))
            }
            try await allAccepted.wait(10, "\(count) accepted connections")
            for (i, (client, sink)) in clients.enumerated() {
                try await sink.wait(for: "hello \(i)".utf8.count, 10)
                #expect(sink.bytes == Array("hello \(i)".utf8))
                client.close()
                _ = try await sink.closed.wait(10, "client close")
            }
            let loops = accepted.withLock { $0.map { $0.channel.loop.name } }
            #expect(Set(loops) == ["spread-0", "spread-1"], "accepted on \(loops)")
            // Round robin: two each (the order they are reported in is not fixed: the handed
            // over ones open on the other loop's thread).
            #expect(loops.filter { $0 == "spread-0" }.count == 2 && loops.filter { $0 == "spread-1" }.count == 2,
                    "accepted on \(loops)")
            #expect(accepted.withLock { $0.allSatisfy(\.onItsLoop) }, "onAccept runs on the channel's loop")
            listener.close()
        } catch {
            await group.shutdown()
            throw error
        }
        await group.shutdown()
        for loop in group.loops {
            #expect(loop.closeStatus == 0)
            #expect(await loop.openHandleCount == 0)
        }
    }
}

/// The EventLoopFixture helper executable and ways to run and watch processes.
enum Fixture {
    /// `EventLoopFixture` in the build products directory (next to the test binary, or up to
    /// three levels above it when the binary sits in a bundle).
    static let path: String? = {
        var dir = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        for _ in 0..<4 {
            guard let slash = dir.lastIndex(of: "/") else { break }
            dir = String(dir[..<slash])
            let candidate = dir + "/EventLoopFixture"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }()

    /// Options for a program with no stdio.
    static func quiet(_ executable: String, _ arguments: [String] = []) -> ProcessOptions {
        var options = ProcessOptions(executable: executable, arguments: arguments)
        options.stdin = .ignore
        options.stdout = .ignore
        options.stderr = .ignore
        return options
    }

    /// Runs `argv` on a loop of its own and returns its exit status and its stdout and stderr.
    static func run(_ argv: [String], timeout: Double = 60) async throws -> (status: SpindleEventLoop.ExitStatus, output: String) {
        try await withLoop("fixture-runner") { loop in
            var options = ProcessOptions(executable: argv[0], arguments: Array(argv.dropFirst()))
            options.stdin = .ignore
            options.stdout = .pipe
            options.stderr = .pipe
            let child = try await ChildProcess.spawn(on: loop, options)
            let out = ByteSink(), err = ByteSink()
            out.start(try #require(child.stdout))
            err.start(try #require(child.stderr))
            let status = try await withTimeout(timeout, "\(argv.joined(separator: " ")) to exit") { await child.wait() }
            _ = try await out.closed.wait(10, "fixture stdout")
            _ = try await err.closed.wait(10, "fixture stderr")
            return (status, String(decoding: out.bytes + err.bytes, as: UTF8.self))
        }
    }

    /// `body`'s result, or `TimedOut` after `seconds` even when `body` never returns (it is
    /// left running): for waits that cannot be cancelled.
    static func within<T: Sendable>(_ seconds: Double, _ what: String,
                                    _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let outcome = Promise<Result<T, any Error>?>()
        Task {
            do { outcome.fulfil(.success(try await body())) } catch { outcome.fulfil(.failure(error)) }
        }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            outcome.fulfil(nil)
        }
        guard let result = try await outcome.wait(seconds + 10, what) else { throw TimedOut(what: what) }
        return try result.get()
    }

    /// A field of /proc/PID/status ("State", "TracerPid"), nil once the process is gone.
    static func procField(_ pid: Int32, _ name: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// Waits until `condition` holds, checking every few milliseconds; fails after `seconds`.
    static func waitUntil(_ what: String, seconds: Double = 10, _ condition: @escaping @Sendable () -> Bool) async throws {
        try await withTimeout(seconds, what) {
            while !condition() { try await Task.sleep(for: .milliseconds(5)) }
        }
    }
}
