/// The life of one proc as its agent (or, for `timeout`, its client) reports it.
///
/// ```
/// starting ─▶ running ─▶ ready ─▶ stopping ─▶ stopped(exit code, stderr tail)
///     │          │         │          │      ├▶ killed(signal)
///     └──────────┴─────────┴──────────┴──────┴▶ failed(reason)
/// ```
/// `timeout` is never sent by an agent: a client reports it for a rank it never heard from
/// before an idle timeout expired.
public enum ProcState: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The agent accepted the spawn and is starting the process.
    case starting
    /// The process exists (it has a pid) but has not announced itself.
    case running
    /// The process connected back to its agent and announced itself ready.
    case ready
    /// The agent sent SIGTERM and waits for the process to exit (SIGKILL after the grace).
    case stopping
    /// The process exited by itself or after a stop; the last lines it wrote to stderr.
    case stopped(exitCode: Int32, stderrTail: [String])
    /// The process was ended by a signal.
    case killed(signal: Int32)
    /// The process could not be started, or its agent lost track of it.
    case failed(reason: String)
    /// The client heard nothing about this rank before its idle timeout.
    case timeout

    /// True for states a proc never leaves.
    public var isTerminal: Bool {
        switch self {
        case .stopped, .killed, .failed: return true
        case .starting, .running, .ready, .stopping, .timeout: return false
        }
    }

    /// The state's name without its details: `starting`, `stopped`, `timeout`, …
    public var name: String {
        switch self {
        case .starting: return "starting"
        case .running: return "running"
        case .ready: return "ready"
        case .stopping: return "stopping"
        case .stopped: return "stopped"
        case .killed: return "killed"
        case .failed: return "failed"
        case .timeout: return "timeout"
        }
    }

    public var description: String {
        switch self {
        case .stopped(let code, let tail):
            if let last = tail.last { return "stopped(exit \(code), stderr: \(last))" }
            return "stopped(exit \(code))"
        case .killed(let signal): return "killed(signal \(signal))"
        case .failed(let reason): return "failed(\(reason))"
        default: return name
        }
    }
}

/// One proc's state with where it runs.
public struct ProcStatus: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The proc mesh the proc belongs to.
    public var mesh: String
    /// The proc's rank in its mesh.
    public var rank: Int
    public var state: ProcState
    /// The process id, once the process exists.
    public var pid: Int32?

    public init(mesh: String, rank: Int, state: ProcState, pid: Int32? = nil) {
        self.mesh = mesh
        self.rank = rank
        self.state = state
        self.pid = pid
    }

    public var description: String {
        "\(mesh)[\(rank)] \(state)" + (pid.map { " pid \($0)" } ?? "")
    }
}
