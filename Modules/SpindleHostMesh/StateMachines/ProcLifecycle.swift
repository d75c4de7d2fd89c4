import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

/// One proc's lifecycle on its agent, without I/O: events in, actions out.
///
/// The agent's shell spawns the process, forwards its pid, its hello, its exit and the ticks
/// of a timer, and performs the returned actions (report a state, send a signal, arm a
/// timer, report a death, start the process again). Stopping is SIGTERM, then SIGKILL once
/// the grace period has passed. With `RestartPolicy.onFailure`, a proc that ends by itself
/// with a non-zero code or a signal is started again after the backoff, at most
/// `maxRestarts` times; then it is `failed` with the reason.
///
/// ```
/// starting ─spawned─▶ running ─ready─▶ ready ─stop─▶ stopping ─exit─▶ stopped / killed
///    ▲                   │               │
///    └── backoff ◀─ died (failure, restarts left) ── otherwise: stopped / killed / failed
/// ```
public struct ProcLifecycle: Sendable {
    /// What the shell must do.
    public enum Action: Sendable, Hashable {
        /// Tell the owning client the proc's new state.
        case report(ProcState)
        /// Send this signal to the process (SIGTERM to stop, SIGKILL after the grace).
        case signal(Int32)
        /// Call `poll(now:)` at (or after) this instant.
        case armTimer(MonotonicInstant)
        /// The proc ended by itself with a failure (non-zero exit or a signal): tell the owner.
        case died(ProcState, wasReady: Bool, restarting: Bool)
        /// Start the process again (a new start: new pid, new token); then `spawned` or
        /// `spawnFailed` as for the first start.
        case restart
    }

    public private(set) var state: ProcState = .starting
    public private(set) var pid: Int32?
    /// How many times the proc was started again.
    public private(set) var restarts = 0
    /// When SIGKILL follows the SIGTERM of a stop; nil when no stop is under way.
    public private(set) var killDeadline: MonotonicInstant?
    /// When the next restart is due; nil when none is pending.
    public private(set) var restartAt: MonotonicInstant?
    private var stopWanted = false
    private var killSent = false
    /// The proc announced itself ready before the shell reported its spawn (the child can
    /// connect back before the spawn's completion reaches the agent's state).
    private var readyBeforeSpawned = false
    /// How the proc last died, while a restart is pending.
    private var lastDeath: ProcState?
    private let grace: Duration
    public let restartPolicy: RestartPolicy
    public let readiness: Readiness

    /// - Parameters:
    ///   - grace: how long a stopping proc has between SIGTERM and SIGKILL.
    ///   - restart: what to do when the proc ends by itself with a failure.
    ///   - readiness: `.started` makes a running proc `ready` at once.
    public init(grace: Duration, restart: RestartPolicy = .never, readiness: Readiness = .announced) {
        self.grace = grace
        self.restartPolicy = restart
        self.readiness = readiness
    }

    /// The process exists.
    public mutating func spawned(pid: Int32, now: MonotonicInstant) -> [Action] {
        guard state == .starting, restartAt == nil else { return [] }
        self.pid = pid
        state = .running
        var actions: [Action] = [.report(.running)]
        if stopWanted {
            actions += beginStop(now: now)
        } else if readyBeforeSpawned || readiness == .started {
            readyBeforeSpawned = false
            state = .ready
            actions.append(.report(.ready))
        }
        return actions
    }

    /// The process could not be started.
    public mutating func spawnFailed(reason: String) -> [Action] {
        guard state == .starting, restartAt == nil else { return [] }
        state = .failed(reason: restarts > 0 ? "restart \(restarts) failed: \(reason)" : reason)
        return [.report(state)]
    }

    /// The process connected back and announced itself ready.
    public mutating func announcedReady() -> [Action] {
        if state == .starting && restartAt == nil {
            readyBeforeSpawned = true
            return []
        }
        guard state == .running else { return [] }
        state = .ready
        return [.report(.ready)]
    }

    /// Stop the proc: SIGTERM now, SIGKILL after the grace period. A pending restart is
    /// cancelled: the proc stays ended as it died.
    public mutating func stop(now: MonotonicInstant) -> [Action] {
        if restartAt != nil {
            restartAt = nil
            state = lastDeath ?? .failed(reason: "stopped before its restart")
            lastDeath = nil
            return [.report(state)]
        }
        switch state {
        case .starting:
            stopWanted = true
            return []
        case .running, .ready:
            return beginStop(now: now)
        case .stopping, .stopped, .killed, .failed, .timeout, .hostLost:
            return []
        }
    }

    /// Time passed: past the kill deadline a stopping proc gets SIGKILL; a due restart starts.
    /// Called before its deadline (a timer may fire a little early: libuv's clock is coarser
    /// than this one) it asks to be called again then.
    public mutating func poll(now: MonotonicInstant) -> [Action] {
        if let at = restartAt {
            guard now >= at else { return [.armTimer(at)] }
            restartAt = nil
            lastDeath = nil
            return [.restart]
        }
        guard state == .stopping, !killSent, let d = killDeadline else { return [] }
        guard now >= d else { return [.armTimer(d)] }
        killSent = true
        return [.signal(SIGKILL)]
    }

    /// The process ended with an exit code.
    public mutating func exited(code: Int32, stderrTail: [String], now: MonotonicInstant) -> [Action] {
        ended(.stopped(exitCode: code, stderrTail: stderrTail), failure: code != 0, now: now)
    }

    /// The process was ended by a signal.
    public mutating func signaled(_ signal: Int32, now: MonotonicInstant) -> [Action] {
        ended(.killed(signal: signal), failure: true, now: now)
    }

    private mutating func ended(_ final: ProcState, failure: Bool, now: MonotonicInstant) -> [Action] {
        guard !state.isTerminal, restartAt == nil else { return [] }
        killDeadline = nil
        let unexpected = !stopWanted && state != .stopping
        guard unexpected, failure else {
            state = final
            return [.report(final)]
        }
        let wasReady = state == .ready
        if case .onFailure(let limit, let backoff) = restartPolicy {
            if restarts < limit {
                restarts += 1
                lastDeath = final
                state = .starting
                pid = nil
                readyBeforeSpawned = false
                killSent = false
                let at = now + backoff
                restartAt = at
                return [.died(final, wasReady: wasReady, restarting: true), .report(.starting), .armTimer(at)]
            }
            state = .failed(reason: "\(final.description) after \(restarts) restart\(restarts == 1 ? "" : "s") (limit \(limit))")
            return [.died(final, wasReady: wasReady, restarting: false), .report(state)]
        }
        state = final
        return [.died(final, wasReady: wasReady, restarting: false), .report(final)]
    }

    private mutating func beginStop(now: MonotonicInstant) -> [Action] {
        state = .stopping
        stopWanted = true
        let d = now + grace
        killDeadline = d
        return [.report(.stopping), .signal(SIGTERM), .armTimer(d)]
    }
}
