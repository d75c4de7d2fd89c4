import CLibUV

/// How a child's standard stream is connected.
public enum StdioMode: Sendable, Equatable {
    /// A new pipe, exposed as a ``StreamChannel`` on the ``ChildProcess``.
    case pipe
    /// The parent's own descriptor.
    case inherit
    /// `/dev/null`.
    case ignore
}

/// How a child process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exited with code \(code)"
        case .signaled(let signal):
            return "killed by signal \(signal)" + (SignalNames.name(of: signal).map { " (SIG\($0))" } ?? "")
        }
    }

    /// Decodes a `waitpid` status word.
    init(waitStatus status: Int32) {
        if status & 0x7f == 0 {
            self = .exited(code: (status >> 8) & 0xff)
        } else {
            self = .signaled(signal: status & 0x7f)
        }
    }
}

/// What to run and how: program, arguments, environment, directory, stdio, parent-death signal.
public struct ProcessOptions: Sendable {
    /// A path, or a bare name looked up in `PATH` (the child's `PATH` when `environment` sets one).
    public var executable: String
    /// argv[1...]; argv[0] is `executable` as given.
    public var arguments: [String]
    /// The complete environment of the child; nil inherits the parent's.
    public var environment: [String: String]?
    /// The child's working directory; nil inherits the parent's.
    public var workingDirectory: String?
    public var stdin: StdioMode = .pipe
    public var stdout: StdioMode = .pipe
    public var stderr: StdioMode = .pipe
    /// Linux: signal the child receives when the spawning loop thread dies (PR_SET_PDEATHSIG,
    /// applied through /usr/bin/setpriv --pdeathsig since uv_spawn has no pre-exec hook).
    public var parentDeathSignal: Int32? = nil
    /// Starts the child in a new session and process group (`UV_PROCESS_DETACHED`, setsid).
    public var newProcessGroup: Bool = false
    /// The signal loop shutdown sends a child that is still running. SIGKILL by default; a
    /// child that must clean up after itself (a process-group keeper) takes a catchable one,
    /// and gets SIGKILL only if it has not exited 5 s later.
    public var shutdownSignal: Int32 = SIGKILL
    /// Options of the stdio pipe channels.
    public var pipeConfiguration = StreamConfiguration()

    public init(executable: String, arguments: [String] = []) {
        self.executable = executable
        self.arguments = arguments
    }
}

/// Linux signal numbers and the names setpriv(1) accepts.
enum SignalNames {
    static let table: [Int32: String] = [
        SIGHUP: "HUP", SIGINT: "INT", SIGQUIT: "QUIT", SIGILL: "ILL", SIGTRAP: "TRAP", SIGABRT: "ABRT",
        SIGBUS: "BUS", SIGFPE: "FPE", SIGKILL: "KILL", SIGUSR1: "USR1", SIGSEGV: "SEGV", SIGUSR2: "USR2",
        SIGPIPE: "PIPE", SIGALRM: "ALRM", SIGTERM: "TERM", SIGCHLD: "CHLD", SIGCONT: "CONT",
        SIGSTOP: "STOP", SIGTSTP: "TSTP", SIGTTIN: "TTIN", SIGTTOU: "TTOU", SIGURG: "URG",
        SIGXCPU: "XCPU", SIGXFSZ: "XFSZ", SIGVTALRM: "VTALRM", SIGPROF: "PROF", SIGWINCH: "WINCH",
        SIGIO: "IO", SIGPWR: "PWR", SIGSYS: "SYS",
    ]

    static func name(of signal: Int32) -> String? { table[signal] }
}
