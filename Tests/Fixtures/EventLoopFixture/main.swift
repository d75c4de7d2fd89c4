// A helper process for the SpindleEventLoop tests (EventLoopFixTests). Each mode changes
// something process-wide that a test process shared with other tests must not change, prints
// what it saw, and exits 0 only when the event loop behaved:
//
//   nofile     lowers RLIMIT_NOFILE and makes EventLoop init run out of descriptors at every
//              step of uv_loop_init: each attempt must throw a typed EMFILE error, leak no
//              descriptor, and nothing may crash (a double free aborts the process).
//   pid-reuse  run as pid 1 of a new pid namespace (`unshare --pid --fork`): from the exit
//              handler of one child, a child libuv reaped in the same pass gets its pid reused
//              by another process; ChildProcess.kill must throw ESRCH and leave that process alone.
//              With a second argument `no-pidfd`, children get no pidfd (as before Linux 5.3).
//   no-pidfd-kill  children without a pidfd: kill from another thread (sent on the loop
//              thread) works while the child runs, is ESRCH after its exit and
//              ELOOPSHUTDOWN once the loop is gone.
import CLibUV
import SpindleEventLoop
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Writes a line to stdout at once (the parent reads it after the exit).
func say(_ text: String) {
    let line = Array((text + "\n").utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

// MARK: nofile

func openFiller() -> Int32 { open("/dev/null", O_RDONLY | O_CLOEXEC) }

func noFileMode() async -> Int32 {
    // libuv creates a process-wide signal pipe with the first loop and aborts if it cannot:
    // that first loop is made before the limit.
    var loops: [EventLoop] = []
    do { loops.append(try EventLoop(name: "fixture-0")) } catch {
        say("FAIL: the first loop failed: \(error)")
        return 1
    }
    var limit = rlimit(rlim_cur: 64, rlim_max: 64)
    guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
        say("FAIL: setrlimit: errno \(errno)")
        return 1
    }
    var failures: [EventLoopError] = []
    var ok = true

    // Run out at each step of uv_loop_init (epoll, signal pipe, async eventfd): leave 0...3
    // descriptors free; every attempt must fail and give back exactly what it took.
    var fillers: [Int32] = []
    while case let fd = openFiller(), fd >= 0 { fillers.append(fd) }
    for free in 0...3 {
        for _ in 0..<free { _ = close(fillers.removeLast()) }
        do {
            loops.append(try EventLoop(name: "fixture-free-\(free)"))
            say("FAIL: a loop opened with \(free) descriptors free")
            ok = false
        } catch {
            say("\(free) free: \(error)")
            failures.append(error)
        }
        var refilled = 0
        while case let fd = openFiller(), fd >= 0 {
            fillers.append(fd)
            refilled += 1
        }
        if refilled != free {
            say("FAIL: \(free) descriptors were free before the attempt, \(refilled) after it")
            ok = false
        }
    }
    for fd in fillers { _ = close(fd) }

    // Open loops until init throws.
    let before = failures.count
    for i in 1...100 {
        do { loops.append(try EventLoop(name: "fixture-\(i)")) } catch {
            say("loop \(i): \(error)")
            failures.append(error)
            break
        }
    }
    if failures.count == before {
        say("FAIL: 100 loops opened under a limit of 64 descriptors")
        ok = false
    }
    for error in failures where error.code != UV_EMFILE.rawValue || !error.operation.contains("event loop") {
        say("FAIL: not a typed EMFILE naming the loop: \(error)")
        ok = false
    }

    // Shut down, every loop closes cleanly, and with the descriptors back a loop opens again.
    func shutDown(_ loops: [EventLoop]) async {
        for loop in loops {
            await loop.shutdown()
            if loop.closeStatus != 0 {
                say("FAIL: loop \(loop.name) closed with \(String(describing: loop.closeStatus))")
                ok = false
            }
        }
    }
    await shutDown(loops)
    do { await shutDown([try EventLoop(name: "fixture-after")]) } catch {
        say("FAIL: no loop after the descriptors were released: \(error)")
        ok = false
    }
    say(ok ? "OK: \(failures.count) typed init failures" : "FAILED")
    return ok ? 0 : 1
}

// MARK: pid-reuse

/// Spawns `/bin/sleep 30` directly (not through the loop, which is busy); returns its pid.
func spawnVictim() -> pid_t {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
    defer { for p in argv { free(p) } }
    let rc = argv.withUnsafeBufferPointer { posix_spawn(&pid, "/bin/sleep", nil, nil, $0.baseAddress!, nil) }
    return rc == 0 ? pid : -1
}

/// Makes the next pid this namespace hands out `pid`.
func setNextPid(_ pid: pid_t) -> Bool {
    let fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY)
    guard fd >= 0 else { return false }
    defer { _ = close(fd) }
    let text = Array("\(pid - 1)".utf8)
    return text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == text.count
}

/// Runs in the exit handler of the first of two children to be reported. libuv reaped both in
/// one pass; the other's exit may or may not be recorded yet (Spindle runs exit handlers only
/// once every exit of the pass is recorded; before that fix the handler ran while the other
/// was reaped and unrecorded). Either way its pid is free: hand it to a new process and kill.
func checkReapedButUnreported(_ other: ChildProcess) -> String {
    guard spindle_child_state(other.pid) == -ECHILD else {
        return "SETUP: the other child was not reaped with the first"
    }
    guard setNextPid(other.pid) else { return "SETUP: cannot write ns_last_pid (errno \(errno))" }
    let victim = spawnVictim()
    guard victim > 0 else { return "SETUP: cannot spawn the victim" }
    defer {
        _ = Glibc.kill(victim, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(victim, &status, 0)
    }
    guard victim == other.pid else { return "SETUP: the victim got pid \(victim), not \(other.pid)" }
    var outcome: String
    do {
        try other.kill(SIGTERM)
        outcome = "FAIL: kill returned without an error"
    } catch {
        outcome = error == .noSuchProcess ? "OK: \(error)" : "FAIL: \(error)"
    }
    if spindle_child_state(victim) != 1 {
        outcome = "FAIL: the process that reused pid \(victim) was signalled"
    }
    return outcome
}

func pidReuseMode() async -> Int32 {
    guard getpid() == 1 else {
        say("SETUP: not pid 1 of a new pid namespace (run under unshare --pid --fork)")
        return 3
    }
    do {
        let loop = try EventLoop(name: "fixture-pid")
        var options = ProcessOptions(executable: "/bin/sh", arguments: ["-c", "read line"])
        options.stdout = .ignore
        let a = try await ChildProcess.spawn(on: loop, options)
        let b = try await ChildProcess.spawn(on: loop, options)
        final class Result: @unchecked Sendable {
            // @unchecked Sendable: written once on the loop thread, read after `wait()` returns,
            // which the exit continuation orders.
            var text: String?
        }
        let result = Result()
        for (me, other) in [(a, b), (b, a)] {
            me.onExit { _ in
                if result.text == nil { result.text = checkReapedButUnreported(other) }
            }
        }
        // End both children and hold the loop until both have exited, so libuv reaps them in
        // one pass and reports them one after the other.
        try await loop.submit {
            a.stdin?.close()
            b.stdin?.close()
            var info = siginfo_t()
            _ = waitid(P_PID, id_t(a.pid), &info, WEXITED | WNOWAIT)
            _ = waitid(P_PID, id_t(b.pid), &info, WEXITED | WNOWAIT)
        }
        _ = await a.wait()
        _ = await b.wait()
        await loop.shutdown()
        let text = result.text ?? "SETUP: no exit reported"
        say(text)
        return text.hasPrefix("OK") ? 0 : text.hasPrefix("SETUP") ? 3 : 1
    } catch {
        say("SETUP: \(error)")
        return 3
    }
}

// MARK: no-pidfd-kill

func noPidfdKillMode() async -> Int32 {
    ChildProcess.pidfdsDisabled.store(true, ordering: .relaxed)
    do {
        let loop = try EventLoop(name: "fixture-hop")
        var options = ProcessOptions(executable: "/bin/sleep", arguments: ["30"])
        options.stdin = .ignore
        options.stdout = .ignore
        let child = try await ChildProcess.spawn(on: loop, options)
        var ok = true
        func check(_ what: String, _ condition: Bool) {
            if !condition { say("FAIL: \(what)"); ok = false }
        }
        // From this (non-loop) thread: each signal is sent on the loop thread.
        do { try child.kill(0) } catch { check("kill(0) of a running child: \(error)", false) }
        do { try child.kill(SIGKILL) } catch { check("kill(SIGKILL) of a running child: \(error)", false) }
        let status = await child.wait()
        check("exit status \(status)", status == .signaled(signal: SIGKILL))
        do { try child.kill(SIGTERM); check("kill after the exit returned", false) } catch {
            check("kill after the exit: \(error)", error == .noSuchProcess)
        }
        let late = try await ChildProcess.spawn(on: loop, options)
        await loop.shutdown()
        check("shutdown killed the child: \(String(describing: late.exitStatus))", late.exitStatus == .signaled(signal: SIGKILL))
        do { try late.kill(SIGTERM); check("kill after shutdown returned", false) } catch {
            check("kill after shutdown: \(error)", error == .noSuchProcess || error == .loopShutDown)
        }
        say(ok ? "OK: signals without a pidfd" : "FAILED")
        return ok ? 0 : 1
    } catch {
        say("FAIL: \(error)")
        return 1
    }
}

// MARK: main

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first ?? "" {
case "nofile": exit(await noFileMode())
case "pid-reuse":
    if arguments.dropFirst().first == "no-pidfd" { ChildProcess.pidfdsDisabled.store(true, ordering: .relaxed) }
    exit(await pidReuseMode())
case "no-pidfd-kill": exit(await noPidfdKillMode())
default:
    say("EventLoopFixture: a helper process for the SpindleEventLoop tests; modes: nofile, pid-reuse [no-pidfd], no-pidfd-kill")
    exit(2)
}
