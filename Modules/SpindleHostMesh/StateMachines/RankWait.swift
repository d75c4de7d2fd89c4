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
    public private(set) var deadline: MonotonicInstant
    public private(set) var outcome: Outcome?

    public init(goal: Goal, ranks: Int, idle: Duration, now: MonotonicInstant, initial: [ProcState?]? = nil) {
        self.goal = goal
        self.idle = idle
        self.states = initial ?? Array(repeating: nil, count: ranks)
        self.deadline = now + idle
        if ranks == 0 { outcome = .reached([]) } else { check() }
    }

    /// Every rank's last known state, `timeout` for ranks never heard from.
    public var snapshot: [ProcState] { states.map { $0 ?? .timeout } }

    /// A rank's state changed: record it and re-arm the idle timeout.
    /// - Returns: the outcome if this update ended the wait.
    @discardableResult
    public mutating func record(rank: Int, state: ProcState, now: MonotonicInstant) -> Outcome? {
        guard outcome == nil, states.indices.contains(rank) else { return nil }
        // A final state is never replaced by an older, non-final report.
        if let old = states[rank], old.isTerminal, !state.isTerminal { return nil }
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
        }
    }
}
