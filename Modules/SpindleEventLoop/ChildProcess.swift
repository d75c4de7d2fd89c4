import CLibUV
import SpindleKernel
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `uv_spawn` on an event loop.
///
/// Stdio slots configured as ``StdioMode/pipe`` appear as ``stdin``/``stdout``/``stderr``
/// channels (start reading them to consume output; close ``stdin`` to send EOF). The exit is
/// observed through libuv's SIGCHLD handling (never `waitpid(-1)`).
///
/// Signals never reach a recycled pid: ``kill(_:)`` goes through a pidfd opened at spawn (or,
/// where the kernel has none, runs on the loop thread, which is the only thread that reaps).
///
/// Loop shutdown does not leave the child behind and never blocks the loop thread: a child
/// still running is sent SIGKILL and the loop keeps running until libuv has reaped it and
/// reported its exit (after 5 s without that, the loop stops watching and ``EventLoop/shutdown()``
/// reaps it). A child with a `parentDeathSignal` gets that signal when the loop thread exits,
/// and `shutdown()` reaps it (SIGKILL after 5 s if it is still alive).
public final class ChildProcess: LoopResource, @unchecked Sendable {
    // @unchecked Sendable: `state` is a Mutex; `pidfd` is immutable (and used only under the
    // state lock); `handleOpen`, `shutdownTimer`, `openHandles` and `pendingHandlers` are
    // touched only on the loop thread.

    public let loop: EventLoop
    /// The child's process id.
    public let pid: Int32
    public let stdin: StreamChannel?
    public let stdout: StreamChannel?
    public let stderr: StreamChannel?
    /// The options the child was started with.
    public let options: ProcessOptions
    /// The resolved path of the program (before any setpriv wrapping).
    public let executablePath: String
    private let handle: UnsafeMutablePointer<uv_process_t>
    /// A pidfd for the child (-1 when the kernel could not give one); open until the exit is
    /// recorded, and used only under `state`'s lock, so it never outlives a signal being sent.
    private let pidfd: Int32
    private var handleOpen = true
    private var shutdownTimer: UnsafeMutablePointer<uv_timer_t>?
    /// libuv handles of this process not yet closed (the process handle, the shutdown timer,
    /// the check that runs `onExit` handlers).
    private var openHandles = 1
    /// `onExit` handlers waiting for the end of the loop turn that reported the exit.
    private var pendingHandlers: [@Sendable (ExitStatus) -> Void] = []

    /// When set, children are spawned without a pidfd, as on kernels before Linux 5.3, so the
    /// fallback (signals sent on the loop thread) can be tested. For test fixtures only.
    package static let pidfdsDisabled = Atomic<Bool>(false)

    /// How long loop shutdown waits for libuv to reap a child it sent SIGKILL before it hands
    /// the reaping to `shutdown()` and lets the loop thread exit.
    static let shutdownReapTimeout: UInt64 = 5_000

    private struct State {
        var status: ExitStatus?
        var waiters: [CheckedContinuation<ExitStatus, Never>] = []
        var handlers: [@Sendable (ExitStatus) -> Void] = []
    }
    private let state = Mutex(State())

    private init(loop: EventLoop, pid: Int32, pidfd: Int32, handle: UnsafeMutablePointer<uv_process_t>,
                 options: ProcessOptions, executablePath: String, stdio: [StreamChannel?]) {
        self.loop = loop
        self.pid = pid
        self.pidfd = pidfd
        self.handle = handle
        self.options = options
        self.executablePath = executablePath
        self.stdin = stdio[0]
        self.stdout = stdio[1]
        self.stderr = stdio[2]
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        loop.register(self)
    }

    /// Starts a child process.
    /// - Throws: `EventLoopError` naming the program: ENOENT when it is not found (also for a
    ///   bare name missing from PATH), EACCES when it is not executable, EINVAL for a
    ///   `parentDeathSignal` setpriv does not know, or `.loopShutDown`.
    public static func spawn(on loop: EventLoop, _ options: ProcessOptions) async throws(EventLoopError) -> ChildProcess {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<ChildProcess, EventLoopError>, Never>) in
            let accepted = loop.tryExecute {
                c.resume(returning: Result { () throws(EventLoopError) -> ChildProcess in try launch(on: loop, options) })
            }
            if !accepted {
                c.resume(returning: .failure(.loopShutDown(loop.name, "spawn \"\(options.executable)\"")))
            }
        }
        return try result.get()
    }

    /// The exit status, or nil while the child runs.
    public var exitStatus: ExitStatus? { state.withLock { $0.status } }

    /// Waits for the child to exit. Any number of waiters.
    public func wait() async -> ExitStatus {
        await withCheckedContinuation { (c: CheckedContinuation<ExitStatus, Never>) in
            let now = state.withLock { s -> ExitStatus? in
                if let status = s.status { return status }
                s.waiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }

    /// Calls `body` with the exit status on the loop thread: at the end of the loop turn in
    /// which libuv reported the exit (when every exit libuv reaped with it is recorded too), or
    /// queued at once if the child has already exited (on the calling thread if the loop has
    /// shut down).
    public func onExit(_ body: @escaping @Sendable (ExitStatus) -> Void) {
        let now = state.withLock { s -> ExitStatus? in
            if let status = s.status { return status }
            s.handlers.append(body)
            return nil
        }
        if let now, !loop.tryExecute({ body(now) }) { body(now) }
    }

    /// Sends `signal` to the child (0 only checks that it is still running). Any thread.
    ///
    /// Never signals a recycled pid: the signal goes through the child's pidfd, which refers to
    /// this process and no other, or — where the kernel gave none — is sent on the loop thread
    /// after checking there (the only thread that reaps) that the child has not been reaped.
    /// Off the loop thread that second way waits for the loop to run it.
    /// - Throws: `EventLoopError.noSuchProcess` (ESRCH) once the child has exited, even when its
    ///   exit has not been reported yet; `.loopShutDown` when the child has no pidfd and its loop
    ///   has shut down (the shutdown killed it); otherwise the kill error (EINVAL, EPERM).
    public func kill(_ signal: Int32 = SIGTERM) throws(EventLoopError) {
        let operation = "send signal \(signal) to process \(pid) (\(options.executable))"
        let status: Int32
        if exitStatus != nil {
            status = UV_ESRCH.rawValue   // a reported exit is final
        } else if pidfd >= 0 || loop.inEventLoop {
            status = deliver(signal)
        } else {
            guard let hop = SignalHop() else {
                throw EventLoopError(code: UV_ENOMEM.rawValue, name: "ENOMEM", operation: operation,
                                     message: "cannot create the semaphore to wait for the loop thread")
            }
            let queued = loop.tryExecute { hop.finish(self.deliver(signal)) }
            guard queued else { throw .loopShutDown(loop.name, operation) }
            status = hop.wait()
        }
        if status == UV_ESRCH.rawValue {
            throw EventLoopError(code: UV_ESRCH.rawValue, name: "ESRCH", operation: operation,
                                 message: "the process has exited")
        }
        try EventLoopError.check(status, operation)
    }

    /// Sends `signal` unless the child has exited; 0 or a libuv error code (UV_ESRCH once it
    /// has exited). Safe from any thread with a pidfd; without one, only on the loop thread
    /// while libuv watches the child, or from the sole reaper once it no longer does.
    private func deliver(_ signal: Int32) -> Int32 {
        state.withLock { s -> Int32 in
            if s.status != nil { return UV_ESRCH.rawValue }
            if pidfd >= 0 { return spindle_pidfd_send_signal(pidfd, signal) }
            // No pidfd: the caller is where reaping happens, so the answer holds until the kill.
            switch spindle_child_state(pid) {
            case 1: return uv_kill(pid, signal)
            default: return UV_ESRCH.rawValue   // exited (a zombie) or reaped already
            }
        }
    }

    private func exited(_ status: ExitStatus) {
        for handler in record(status) { handler(status) }
    }

    /// Records the exit, closes the pidfd and wakes `wait()`ers (their tasks run later, on their
    /// executors); returns the `onExit` handlers still to be called.
    private func record(_ status: ExitStatus) -> [@Sendable (ExitStatus) -> Void] {
        let (waiters, handlers) = state.withLock { s -> ([CheckedContinuation<ExitStatus, Never>], [@Sendable (ExitStatus) -> Void]) in
            guard s.status == nil else { return ([], []) }
            s.status = status
            if pidfd >= 0 { _ = close(pidfd) }   // under the lock: no signal is being sent through it
            defer { s.waiters = []; s.handlers = [] }
            return (s.waiters, s.handlers)
        }
        for w in waiters { w.resume(returning: status) }
        return handlers
    }

    /// libuv reported the exit (loop thread, inside libuv's SIGCHLD pass).
    ///
    /// libuv reaps every exited child of the loop before it reports the first: right now others
    /// may be reaped and not yet recorded, their pids free for reuse. So the `onExit` handlers
    /// run at the end of this loop turn (a `uv_check`), once every exit of the pass is recorded:
    /// no Spindle callback ever sees a reaped child as running.
    fileprivate func libuvReportedExit(_ status: ExitStatus) {
        let handlers = record(status)
        closeHandle()
        closeShutdownTimer()
        guard !handlers.isEmpty else { return }
        let check = UnsafeMutablePointer<uv_check_t>.allocate(capacity: 1)
        guard uv_check_init(loop.uvLoop, check) == 0 else {
            check.deallocate()
            for handler in handlers { handler(status) }
            return
        }
        check.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        openHandles += 1
        pendingHandlers = handlers
        uv_check_start(check) { c in
            guard let c, let data = c.pointee.data else { return }
            let process = Unmanaged<ChildProcess>.fromOpaque(data).takeUnretainedValue()
            uv_check_stop(c)
            uv_close(UnsafeMutableRawPointer(c).assumingMemoryBound(to: uv_handle_t.self)) { h in
                guard let h else { return }
                let process = Unmanaged<ChildProcess>.fromOpaque(h.pointee.data!).takeUnretainedValue()
                h.deallocate()
                process.handleClosed()
            }
            let handlers = process.pendingHandlers
            process.pendingHandlers = []
            guard let status = process.exitStatus else { return }
            for handler in handlers { handler(status) }
        }
    }

    private func closeHandle() {
        guard handleOpen else { return }
        handleOpen = false
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { h in
            guard let h else { return }
            let process = Unmanaged<ChildProcess>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            h.deallocate()
            process.handleClosed()
        }
    }

    private func handleClosed() {
        openHandles -= 1
        if openHandles == 0 { loop.unregister(self) }
    }

    func closeForShutdown() {
        guard handleOpen else { return }
        guard exitStatus == nil else { return closeHandle() }
        if options.parentDeathSignal != nil {
            // libuv stops watching so the loop thread can exit, which delivers the signal;
            // from here on only `reapAfterLoop` reaps the child.
            closeHandle()
            loop.afterThreadExit { await self.reapAfterLoop(killAfter: .seconds(5)) }
            return
        }
        // SIGKILL (or the child's `shutdownSignal`), then let libuv reap it through SIGCHLD and
        // report the exit (which closes the handle); the loop keeps running until then.
        // Bounded: see `shutdownTimedOut`.
        _ = deliver(options.shutdownSignal)
        let timer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        guard uv_timer_init(loop.uvLoop, timer) == 0 else {
            timer.deallocate()
            return shutdownTimedOut()
        }
        timer.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        openHandles += 1
        shutdownTimer = timer
        uv_timer_start(timer, { t in
            guard let t, let data = t.pointee.data else { return }
            Unmanaged<ChildProcess>.fromOpaque(data).takeUnretainedValue().shutdownTimedOut()
        }, ChildProcess.shutdownReapTimeout, 0)
    }

    /// libuv has not reported the killed child's exit in time (loop thread, during shutdown):
    /// stop watching so the loop can finish, and reap it off the loop thread once it has.
    private func shutdownTimedOut() {
        closeShutdownTimer()
        guard handleOpen, exitStatus == nil else { return }
        closeHandle()
        let killAfter: Duration? = options.shutdownSignal == SIGKILL ? nil : .zero
        loop.afterThreadExit { await self.reapAfterLoop(killAfter: killAfter) }
    }

    private func closeShutdownTimer() {
        guard let timer = shutdownTimer else { return }
        shutdownTimer = nil
        uv_close(UnsafeMutableRawPointer(timer).assumingMemoryBound(to: uv_handle_t.self)) { h in
            guard let h else { return }
            let process = Unmanaged<ChildProcess>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            h.deallocate()
            process.handleClosed()
        }
    }

    /// Reaps the child after the loop thread has exited (on the task running `shutdown()`, the
    /// only reaper by then), polling without blocking a thread; sends SIGKILL once `killAfter`
    /// has passed (nil: it was sent already). Returns once the exit is recorded.
    private func reapAfterLoop(killAfter grace: Duration?) async {
        let clock = SystemClock()
        let start = clock.now()
        var killed = grace == nil
        var pause = Duration.milliseconds(1)
        while true {
            if let status = ChildProcess.reap(pid) { return exited(status) }
            if !killed, let grace, clock.now() - start >= grace {
                _ = deliver(SIGKILL)
                killed = true
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(50))
        }
    }

    /// `waitpid(pid, WNOHANG)` on this one pid (never -1): the status once it has exited, nil
    /// while it runs. A pid that is no longer our child counts as killed.
    private static func reap(_ pid: Int32) -> ExitStatus? {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return ExitStatus(waitStatus: status) }
            if r == -1 && errno == EINTR { continue }
            if r == -1 { return .signaled(signal: SIGKILL) }
            return nil
        }
    }
}

/// A signal sent on the loop thread for a caller on another thread, which waits for the result.
private final class SignalHop: @unchecked Sendable {
    // @unchecked Sendable: `result` is written once before `uv_sem_post` and read after
    // `uv_sem_wait`, which orders the two; the semaphore itself is thread-safe.
    private let semaphore = UnsafeMutablePointer<uv_sem_t>.allocate(capacity: 1)
    private let initialised: Bool
    private var result: Int32 = 0

    init?() {
        initialised = uv_sem_init(semaphore, 0) == 0
        if !initialised { return nil }   // deinit frees the memory
    }

    deinit {
        if initialised { uv_sem_destroy(semaphore) }
        semaphore.deallocate()
    }

    func finish(_ status: Int32) {
        result = status
        uv_sem_post(semaphore)
    }

    func wait() -> Int32 {
        uv_sem_wait(semaphore)
        return result
    }
}

extension ChildProcess {
    /// Spawns on the loop thread.
    fileprivate static func launch(on loop: EventLoop, _ options: ProcessOptions) throws(EventLoopError) -> ChildProcess {
        let operation = "spawn \"\(options.executable)\""
        guard !loop.isClosing else { throw .loopShutDown(loop.name, operation) }
        let path = try resolve(options)
        var file = path
        var argv = [options.executable] + options.arguments
        if let signal = options.parentDeathSignal {
            guard let name = SignalNames.name(of: signal) else {
                throw EventLoopError(code: UV_EINVAL.rawValue, name: "EINVAL", operation: operation,
                                     message: "parentDeathSignal \(signal) is not a signal setpriv knows")
            }
            file = "/usr/bin/setpriv"
            argv = [file, "--pdeathsig", name, "--", path] + options.arguments
        }
        let env = options.environment.map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } }

        // Stdio pipes: initialised before uv_spawn, owned by channels after it succeeds.
        let modes = [options.stdin, options.stdout, options.stderr]
        var pipes: [UnsafeMutableRawPointer?] = [nil, nil, nil]
        let containers = UnsafeMutablePointer<uv_stdio_container_t>.allocate(capacity: 3)
        defer { containers.deallocate() }
        for fd in 0..<3 {
            switch modes[fd] {
            case .pipe:
                let raw = StreamChannel.allocateHandle()
                let initStatus = uv_pipe_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_pipe_t.self), 0)
                guard initStatus == 0 else {
                    raw.deallocate()
                    for open in pipes.compactMap({ $0 }) {
                        uv_close(open.assumingMemoryBound(to: uv_handle_t.self)) { $0?.deallocate() }
                    }
                    throw EventLoopError(uvCode: initStatus, operation: "\(operation): create the pipe for fd \(fd)")
                }
                pipes[fd] = raw
                spindle_stdio_pipe(containers + fd, raw.assumingMemoryBound(to: uv_stream_t.self), fd == 0 ? 1 : 0)
            case .inherit:
                spindle_stdio_inherit(containers + fd, Int32(fd))
            case .ignore:
                spindle_stdio_ignore(containers + fd)
            }
        }

        let process = UnsafeMutablePointer<uv_process_t>.allocate(capacity: 1)
        let status: Int32 = withCStrings(argv) { args in
            withOptionalCStrings(env) { envp in
                withOptionalCString(options.workingDirectory) { cwd in
                    var uvOptions = uv_process_options_t()
                    uvOptions.exit_cb = { h, exitStatus, termSignal in
                        guard let h else { return }
                        let child = Unmanaged<ChildProcess>.fromOpaque(h.pointee.data!).takeUnretainedValue()
                        child.libuvReportedExit(termSignal != 0 ? .signaled(signal: termSignal)
                                                                : .exited(code: Int32(truncatingIfNeeded: exitStatus)))
                    }
                    uvOptions.file = UnsafePointer(args[0])
                    uvOptions.args = args
                    uvOptions.env = envp
                    uvOptions.cwd = cwd
                    uvOptions.flags = options.newProcessGroup ? UInt32(UV_PROCESS_DETACHED.rawValue) : 0
                    uvOptions.stdio_count = 3
                    uvOptions.stdio = containers
                    return file.withCString { f in
                        uvOptions.file = f
                        return uv_spawn(loop.uvLoop, process, &uvOptions)
                    }
                }
            }
        }
        if status < 0 {
            uv_close(UnsafeMutableRawPointer(process).assumingMemoryBound(to: uv_handle_t.self)) { $0?.deallocate() }
            for raw in pipes.compactMap({ $0 }) {
                uv_close(raw.assumingMemoryBound(to: uv_handle_t.self)) { $0?.deallocate() }
            }
            var error = EventLoopError(uvCode: status, operation: operation)
            if let dir = options.workingDirectory, status == UV_ENOENT.rawValue {
                error.message += " (program \(path), working directory \(dir))"
            }
            throw error
        }
        let pid = process.pointee.pid
        // Opened on the loop thread before it can reap the child, so the pidfd is this child's.
        let pidfd = pidfdsDisabled.load(ordering: .relaxed) ? -1 : spindle_pidfd_open(pid)
        let names = ["stdin", "stdout", "stderr"]
        let channels: [StreamChannel?] = (0..<3).map { fd in
            pipes[fd].map {
                StreamChannel(loop: loop, kind: .pipe, handle: $0,
                              label: "\(names[fd]) of process \(pid) (\(options.executable))",
                              configuration: options.pipeConfiguration)
            }
        }
        return ChildProcess(loop: loop, pid: pid, pidfd: max(pidfd, -1), handle: process, options: options,
                            executablePath: path, stdio: channels)
    }

    /// Finds the program: a path is checked as is, a bare name is searched in PATH.
    fileprivate static func resolve(_ options: ProcessOptions) throws(EventLoopError) -> String {
        let name = options.executable
        let operation = "spawn \"\(name)\""
        guard !name.isEmpty else {
            throw EventLoopError(code: UV_EINVAL.rawValue, name: "EINVAL", operation: operation, message: "empty executable name")
        }
        if name.contains("/") {
            if access(name, X_OK) == 0 { return name }
            let code = -errno
            throw EventLoopError(code: code, name: String(cString: uv_err_name(code)), operation: operation,
                                 message: "\(String(cString: uv_strerror(code))): \(name)")
        }
        let searchPath = options.environment?["PATH"]
            ?? getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in searchPath.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & 0o170000 == 0o100000, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        throw EventLoopError(code: UV_ENOENT.rawValue, name: "ENOENT", operation: operation,
                             message: "no executable named \"\(name)\" in PATH \(searchPath)")
    }
}

/// Calls `body` with a NULL-terminated `char*` array of `strings`, valid during the call.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

private func withOptionalCStrings<R>(_ strings: [String]?, _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> R) -> R {
    guard let strings else { return body(nil) }
    return withCStrings(strings) { body($0) }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
