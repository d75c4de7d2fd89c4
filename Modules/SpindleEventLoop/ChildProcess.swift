import CLibUV
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
/// Loop shutdown closes the process handle; a child still running then is killed with SIGKILL
/// and reaped, unless it has a `parentDeathSignal`: that signal reaches it when the loop thread
/// exits and ``EventLoop/shutdown()`` reaps it (SIGKILL after 5 s if it is still alive).
public final class ChildProcess: LoopResource, @unchecked Sendable {
    // @unchecked Sendable: `state` is a Mutex; everything else is immutable except
    // `handleOpen`, which is touched only on the loop thread.

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
    private var handleOpen = true

    private struct State {
        var status: ExitStatus?
        var waiters: [CheckedContinuation<ExitStatus, Never>] = []
        var handlers: [@Sendable (ExitStatus) -> Void] = []
    }
    private let state = Mutex(State())

    private init(loop: EventLoop, pid: Int32, handle: UnsafeMutablePointer<uv_process_t>, options: ProcessOptions,
                 executablePath: String, stdio: [StreamChannel?]) {
        self.loop = loop
        self.pid = pid
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

    /// Calls `body` with the exit status on the loop thread (at once, queued, if already exited;
    /// on the calling thread if the loop has shut down).
    public func onExit(_ body: @escaping @Sendable (ExitStatus) -> Void) {
        let now = state.withLock { s -> ExitStatus? in
            if let status = s.status { return status }
            s.handlers.append(body)
            return nil
        }
        if let now, !loop.tryExecute({ body(now) }) { body(now) }
    }

    /// Sends `signal` to the child. Any thread.
    /// - Throws: `EventLoopError.noSuchProcess` (ESRCH) once the child has exited, or the kill error.
    public func kill(_ signal: Int32 = SIGTERM) throws(EventLoopError) {
        let operation = "send signal \(signal) to process \(pid) (\(options.executable))"
        if exitStatus != nil {
            throw EventLoopError(code: UV_ESRCH.rawValue, name: "ESRCH", operation: operation,
                                 message: "the process has exited")
        }
        try EventLoopError.check(uv_kill(pid, signal), operation)
    }

    private func exited(_ status: ExitStatus) {
        let (waiters, handlers) = state.withLock { s -> ([CheckedContinuation<ExitStatus, Never>], [@Sendable (ExitStatus) -> Void]) in
            guard s.status == nil else { return ([], []) }
            s.status = status
            defer { s.waiters = []; s.handlers = [] }
            return (s.waiters, s.handlers)
        }
        for w in waiters { w.resume(returning: status) }
        for h in handlers { h(status) }
    }

    private func closeHandle() {
        guard handleOpen else { return }
        handleOpen = false
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { h in
            guard let h else { return }
            let process = Unmanaged<ChildProcess>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            h.deallocate()
            process.loop.unregister(process)
        }
    }

    func closeForShutdown() {
        guard handleOpen else { return }
        closeHandle()  // libuv stops watching the pid: from here on only this code reaps it
        guard exitStatus == nil else { return }
        let pid = self.pid
        if options.parentDeathSignal == nil {
            _ = uv_kill(pid, SIGKILL)
            exited(ChildProcess.reap(pid, blocking: true) ?? .signaled(signal: SIGKILL))
        } else {
            loop.afterThreadExit {
                // The parent-death signal is delivered as the loop thread exits.
                let deadline = ContinuousClock.now + .seconds(5)
                while ContinuousClock.now < deadline {
                    if let status = ChildProcess.reap(pid, blocking: false) { return self.exited(status) }
                    try? await Task.sleep(for: .milliseconds(2))
                }
                _ = uv_kill(pid, SIGKILL)
                self.exited(ChildProcess.reap(pid, blocking: true) ?? .signaled(signal: SIGKILL))
            }
        }
    }

    /// `waitpid` on this one pid (never -1); nil when still running (non-blocking) or not our child.
    private static func reap(_ pid: Int32, blocking: Bool) -> ExitStatus? {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if r == pid { return ExitStatus(waitStatus: status) }
            if r == -1 && errno == EINTR { continue }
            return nil
        }
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
                uv_pipe_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_pipe_t.self), 0)
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
                        child.exited(termSignal != 0 ? .signaled(signal: termSignal)
                                                     : .exited(code: Int32(truncatingIfNeeded: exitStatus)))
                        child.closeHandle()
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
        let names = ["stdin", "stdout", "stderr"]
        let channels: [StreamChannel?] = (0..<3).map { fd in
            pipes[fd].map {
                StreamChannel(loop: loop, kind: .pipe, handle: $0,
                              label: "\(names[fd]) of process \(pid) (\(options.executable))",
                              configuration: options.pipeConfiguration)
            }
        }
        return ChildProcess(loop: loop, pid: pid, handle: process, options: options, executablePath: path,
                            stdio: channels)
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
