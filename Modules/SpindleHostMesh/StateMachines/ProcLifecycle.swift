import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

/// One proc's lifecycle on its agent, without I/O: events in, actions out.
///
/// The agent's shell spawns the process, forwards its pid, its hello, its exit and the ticks
/// of a timer, and performs the returned actions (report a state, send a signal, arm a
/// timer). Stopping is SIGTERM, then SIGKILL once the grace period has passed.
public struct ProcLifecycle: Sendable {
    /// What the shell must do.
    public enum Action: Sendable, Hashable {
        /// Tell the owning client the proc's new state.
        case report(ProcState)
        /// Send this signal to the process.
        case signal(Int32)
        /// Call `poll(now:)` at (or after) this instant.
        case armTimer(MonotonicInstant)
    }

    public private(set) var state: ProcState = .starting
    public private(set) var pid: Int32?
    /// When SIGKILL follows the SIGTERM of a stop; nil when no stop is under way.
    public private(set) var killDeadline: MonotonicInstant?
    private var stopWanted = false
    private var killSent = false
    /// The proc announced itself ready before the shell reported its spawn (the child can
    /// connect back before the spawn's completion reaches the agent's state).
    private var readyBeforeSpawned = false
    private let grace: Duration

    /// - Parameter grace: how long a stopping proc has between SIGTERM and SIGKILL.
    public init(grace: Duration) {
        self.grace = grace
    }

    /// The process exists.
    public mutating func spawned(pid: Int32, now: MonotonicInstant) -> [Action] {
        guard state == .starting else { return [] }
        self.pid = pid
        state = .running
        var actions: [Action] = [.report(.running)]
        if stopWanted {
            actions += beginStop(now: now)
        } else if readyBeforeSpawned {
            state = .ready
            actions.append(.report(.ready))
        }
        return actions
    }

    /// The process could not be started.
    public mutating func spawnFailed(reason: String) -> [Action] {
        guard state == .starting else { return [] }
        state = .failed(reason: reason)
        return [.report(state)]
    }

    /// The process connected back and announced itself ready.
    public mutating func announcedReady() -> [Action] {
        if state == .starting {
            readyBeforeSpawned = true
            return []
        }
        guard state == .running else { return [] }
        state = .ready
        return [.report(.ready)]
    }

    /// Stop the proc: SIGTERM now, SIGKILL after the grace period.
    public mutating func stop(now: MonotonicInstant) -> [Action] {
        switch state {
        case .starting:
            stopWanted = true
            return []
        case .running, .ready:
            return beginStop(now: now)
        case .stopping, .stopped, .killed, .failed, .timeout:
            return []
        }
    }

    /// Time passed: past the kill deadline a stopping proc gets SIGKILL.
    public mutating func poll(now: MonotonicInstant) -> [Action] {
        guard state == .stopping, !killSent, let d = killDeadline, now >= d else { return [] }
        killSent = true
        return [.signal(SIGKILL)]
    }

    /// The process ended with an exit code.
    public mutating func exited(code: Int32, stderrTail: [String]) -> [Action] {
        guard !state.isTerminal else { return [] }
        state = .stopped(exitCode: code, stderrTail: stderrTail)
        killDeadline = nil
        return [.report(state)]
    }

    /// The process was ended by a signal.
    public mutating func signaled(_ signal: Int32) -> [Action] {
        guard !state.isTerminal else { return [] }
        state = .killed(signal: signal)
        killDeadline = nil
        return [.report(state)]
    }

    private mutating func beginStop(now: MonotonicInstant) -> [Action] {
        state = .stopping
        let d = now + grace
        killDeadline = d
        return [.report(.stopping), .signal(SIGTERM), .armTimer(d)]
    }
}
