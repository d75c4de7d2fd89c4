import SpindleKernel

/// A client's wait for every rank of a proc mesh to reach a goal, with an idle timeout that
/// every state update re-arms; no I/O.
///
/// Spawning waits until every rank is `ready` (any rank ending first fails the wait);
/// stopping waits until every rank is final; a state query waits until every rank has
/// reported once. When the mesh goes quiet for the idle timeout the wait ends with every
/// rank's last state, `timeout` for ranks never heard from.
public struct RankWait: Sendable {
    public enum Goal: Sendable, Hashable {
        /// Every rank `ready`; a rank reaching a final state first fails the wait.
        case allReady
        /// Every rank in a final state.
        case allFinal
        /// Every rank reported at least once.
        case allReported
        /// Every rank has started: `ready` (which `Readiness.started` reports as soon as the
        /// process runs) or ended after it ran (`stopping`, `stopped`, `killed`); a rank that
        /// could not start (`failed`, `hostLost`) fails the wait.
        case allStarted
    }

    /// How a wait ended.
    public enum Outcome: Sendable, Hashable {
        /// The goal was reached; every rank's state.
        case reached([ProcState])
        /// A rank ended before it was ready (spawn only): that rank and every rank's state.
        case rankFailed(rank: Int, [ProcState])
        /// The idle timeout expired; every rank's last state (`timeout` if never heard from).
        case timedOut(idle: Duration, [ProcState])
    }

    public let goal: Goal
    public let idle: Duration
    public private(set) var states: [ProcState?]
    /// Each rank's restart count as last reported: a report of a later start replaces even a
    /// final state, and a report of an earlier one is ignored.
    public private(set) var generations: [Int]
    public private(set) var deadline: MonotonicInstant
    public private(set) var outcome: Outcome?

    /// - Parameters:
    ///   - initial: each rank's state when the wait begins (nil entries: not heard from).
    ///   - generations: each rank's restart count in `initial`.
    public init(goal: Goal, ranks: Int, idle: Duration, now: MonotonicInstant, initial: [ProcState?]? = nil,
                generations: [Int]? = nil) {
        self.goal = goal
        self.idle = idle
        self.states = initial ?? Array(repeating: nil, count: ranks)
        self.generations = generations ?? Array(repeating: 0, count: self.states.count)
        self.deadline = now + idle
        if ranks == 0 { outcome = .reached([]) } else { check() }
    }

    /// Every rank's last known state, `timeout` for ranks never heard from.
    public var snapshot: [ProcState] { states.map { $0 ?? .timeout } }

    /// A rank's state changed: record it and re-arm the idle timeout.
    /// - Returns: the outcome if this update ended the wait.
    @discardableResult
    public mutating func record(rank: Int, state: ProcState, now: MonotonicInstant) -> Outcome? {
        record(rank: rank, state: state, restarts: generations.indices.contains(rank) ? generations[rank] : 0, now: now)
    }

    /// A rank's state changed in its start number `restarts`: record it and re-arm the idle
    /// timeout. A final state is never replaced by a report of the same or an earlier start.
    /// - Returns: the outcome if this update ended the wait.
    @discardableResult
    public mutating func record(rank: Int, state: ProcState, restarts: Int, now: MonotonicInstant) -> Outcome? {
        guard outcome == nil, states.indices.contains(rank) else { return nil }
        if restarts < generations[rank] { return nil }
        if restarts == generations[rank], let old = states[rank], old.isTerminal, !state.isTerminal { return nil }
        generations[rank] = restarts
        states[rank] = state
        deadline = now + idle
        check(changed: rank)
        return outcome
    }

    /// Time passed: at the idle deadline the wait times out.
    @discardableResult
    public mutating func poll(now: MonotonicInstant) -> Outcome? {
        guard outcome == nil, now >= deadline else { return outcome }
        outcome = .timedOut(idle: idle, snapshot)
        return outcome
    }

    private mutating func check(changed: Int? = nil) {
        switch goal {
        case .allReady:
            if let r = changed, let s = states[r], s.isTerminal {
                outcome = .rankFailed(rank: r, snapshot)
            } else if states.allSatisfy({ $0 == .ready }) {
                outcome = .reached(snapshot)
            }
        case .allFinal:
            if states.allSatisfy({ $0?.isTerminal == true }) { outcome = .reached(snapshot) }
        case .allReported:
            if states.allSatisfy({ $0 != nil }) { outcome = .reached(snapshot) }
        case .allStarted:
            if let r = changed, let s = states[r], s.isTerminal, !s.hasStarted {
                outcome = .rankFailed(rank: r, snapshot)
            } else if states.allSatisfy({ $0.map { $0.hasStarted && $0 != .running } == true }) {
                outcome = .reached(snapshot)
            }
        }
    }
}
