/// The life of one proc as its agent (or, for `timeout` and `hostLost`, its client) reports it.
///
/// ```
/// starting ─▶ running ─▶ ready ─▶ stopping ─▶ stopped(exit code, stderr tail)
///     │          │         │          │      ├▶ killed(signal)
///     └──────────┴─────────┴──────────┴──────┴▶ failed(reason)
///
/// died with a restart policy:  … ─▶ starting (restarts + 1) ─▶ running ─▶ …
/// client side:                 any ─▶ hostLost(reason)      (the agent was declared lost)
///                              never heard from ─▶ timeout
/// ```
/// `timeout` and `hostLost` are never sent by an agent: a client reports `timeout` for a rank it
/// never heard from before an idle timeout expired, and `hostLost` for the ranks of an agent
/// that stopped answering (the liveness bound) or ended the session.
public enum ProcState: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The agent accepted the spawn and is starting the process (or waits out a restart backoff).
    case starting
    /// The process exists (it has a pid) but has not announced itself.
    case running
    /// The process connected back to its agent and announced itself ready (or, with
    /// `Readiness.started`, it is running).
    case ready
    /// The agent sent SIGTERM and waits for the process to exit (SIGKILL after the grace).
    case stopping
    /// The process exited by itself or after a stop; the last lines it wrote to stderr.
    case stopped(exitCode: Int32, stderrTail: [String])
    /// The process was ended by a signal (its stderr tail is in `ProcStatus.stderrTail`).
    case killed(signal: Int32)
    /// The process could not be started, its restarts ran out, or its agent lost track of it.
    case failed(reason: String)
    /// The client heard nothing about this rank before its idle timeout.
    case timeout
    /// The client lost its agent (declared lost by the liveness bound, restarted, or gone):
    /// the proc's fate is unknown to the client; an agent stops the procs of a client it loses.
    case hostLost(reason: String)

    /// True for states a proc never leaves (as far as its client knows).
    public var isTerminal: Bool {
        switch self {
        case .stopped, .killed, .failed, .hostLost: return true
        case .starting, .running, .ready, .stopping, .timeout: return false
        }
    }

    /// True once the process has run (it is running, or it ended after it started): what a
    /// spawn with `Readiness.started` waits for.
    public var hasStarted: Bool {
        switch self {
        case .running, .ready, .stopping, .stopped, .killed: return true
        case .starting, .failed, .timeout, .hostLost: return false
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
        case .hostLost: return "hostLost"
        }
    }

    public var description: String {
        switch self {
        case .stopped(let code, let tail):
            // A clean exit's stderr is its ordinary log; a failing one's last line says why.
            if code != 0, let last = tail.last { return "stopped(exit \(code), stderr: \(last))" }
            return "stopped(exit \(code))"
        case .killed(let signal): return "killed(signal \(signal))"
        case .failed(let reason): return "failed(\(reason))"
        case .hostLost(let reason): return "hostLost(\(reason))"
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
    /// The process id, once the process exists (the proc's own pid, not its keeper's).
    public var pid: Int32?
    /// How many times the agent restarted this rank (its restart policy).
    public var restarts: Int
    /// The last lines the proc wrote to stderr; set with every final state (signal deaths
    /// included) and in `died` events.
    public var stderrTail: [String]

    public init(mesh: String, rank: Int, state: ProcState, pid: Int32? = nil, restarts: Int = 0,
                stderrTail: [String] = []) {
        self.mesh = mesh
        self.rank = rank
        self.state = state
        self.pid = pid
        self.restarts = restarts
        self.stderrTail = stderrTail
    }

    public var description: String {
        "\(mesh)[\(rank)] \(state)" + (pid.map { " pid \($0)" } ?? "") + (restarts > 0 ? " restarts \(restarts)" : "")
    }
}

/// A proc that ended without being asked to stop: how it ended and what happens next.
public struct ProcDeath: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The rank and how it ended: `stopped(exitCode:…)` or `killed(signal:)`, with its pid,
    /// its restart count before this death, and its stderr tail.
    public var status: ProcStatus
    /// True when the proc had announced itself ready (or was running, with `Readiness.started`).
    public var wasReady: Bool
    /// True when the restart policy starts it again (its next state is `starting` with
    /// `restarts + 1`); false when it stays ended (`.never`, a clean exit, or restarts used up:
    /// then the rank is `failed` with the reason).
    public var restarting: Bool

    public init(status: ProcStatus, wasReady: Bool, restarting: Bool) {
        self.status = status
        self.wasReady = wasReady
        self.restarting = restarting
    }

    public var rank: Int { status.rank }

    public var description: String {
        "\(status.mesh)[\(status.rank)] died: \(status.state)" + (restarting ? ", restarting" : "")
    }
}
