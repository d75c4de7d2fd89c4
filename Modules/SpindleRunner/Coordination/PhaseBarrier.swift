import SpindleKernel

/// The coordinator's phase barrier as a value-type state machine: no I/O, no threads, no clock
/// reads — the shell passes `now` in and acts on what comes out.
///
/// A round waits for every expected shard to arrive for one (tick, phase). It fails when the
/// round has run longer than the phase timeout, or when no shard has arrived for the idle
/// timeout; the error names the phase, the tick and the shards that did not arrive.
///
/// ```
///  begin(tick, phase, shards, now) ──► waiting ──arrive(all)──► released
///                                        │
///                                        └──poll(now ≥ deadline)──► timedOut(error)
/// ```
public struct PhaseBarrier: Sendable {
    /// How long a round may take in total, and how long it may go without any arrival.
    public var phaseTimeout: Duration
    public var idleTimeout: Duration

    public private(set) var state: State = .idle

    public enum State: Sendable, Equatable {
        case idle
        case waiting(Round)
        case released(Round)
        case timedOut(Round, RunnerError)
    }

    /// The bookkeeping of one round.
    public struct Round: Sendable, Equatable {
        /// Distinguishes rounds, so late arrivals for an abandoned round are recognised.
        public var id: UInt64
        public var tick: UInt64
        public var phase: Phase
        public var expected: Set<ShardID>
        public var arrived: Set<ShardID> = []
        public var startedAt: MonotonicInstant
        public var lastArrivalAt: MonotonicInstant

        /// The expected shards that have not arrived, in increasing order.
        public var missing: [ShardID] { expected.subtracting(arrived).sorted() }
    }

    /// What an arrival did.
    public enum Arrival: Sendable, Equatable {
        /// Counted; others are still missing.
        case counted(remaining: Int)
        /// Counted, and it was the last one: the round is released.
        case released
        /// For a round that is not the current waiting one (late, after a timeout): ignored.
        case stale
        /// The shard is not expected in this round: ignored.
        case unexpected
        /// The shard had already arrived in this round: ignored.
        case duplicate
    }

    /// What polling the clock found.
    public enum Poll: Sendable, Equatable {
        /// Still waiting; poll again by `deadline`.
        case waiting(deadline: MonotonicInstant)
        case released
        /// The round failed; the error names the missing shards.
        case timedOut(RunnerError)
        /// No round has begun.
        case idle
    }

    private var nextRoundID: UInt64 = 1

    public init(phaseTimeout: Duration, idleTimeout: Duration) {
        self.phaseTimeout = phaseTimeout
        self.idleTimeout = idleTimeout
    }

    /// Starts a round for `phase` of `tick` expecting `shards`; abandons any earlier round.
    /// - Returns: the round's id, which arrivals must carry.
    @discardableResult
    public mutating func begin(tick: UInt64, phase: Phase, shards: some Sequence<ShardID>,
                               now: MonotonicInstant) -> UInt64 {
        let id = nextRoundID
        nextRoundID &+= 1
        let round = Round(id: id, tick: tick, phase: phase, expected: Set(shards),
                          startedAt: now, lastArrivalAt: now)
        state = round.expected.isEmpty ? .released(round) : .waiting(round)
        return id
    }

    /// Records that `shard` finished round `roundID`.
    public mutating func arrive(_ shard: ShardID, round roundID: UInt64, now: MonotonicInstant) -> Arrival {
        guard case .waiting(var round) = state, round.id == roundID else { return .stale }
        guard round.expected.contains(shard) else { return .unexpected }
        guard round.arrived.insert(shard).inserted else { return .duplicate }
        round.lastArrivalAt = now
        if round.arrived.count == round.expected.count {
            state = .released(round)
            return .released
        }
        state = .waiting(round)
        return .counted(remaining: round.expected.count - round.arrived.count)
    }

    /// The earliest instant at which the waiting round times out.
    public var deadline: MonotonicInstant? {
        guard case .waiting(let r) = state else { return nil }
        return min(r.startedAt + phaseTimeout, r.lastArrivalAt + idleTimeout)
    }

    /// Checks the round against the clock; moves to `timedOut` when a deadline has passed.
    public mutating func poll(now: MonotonicInstant) -> Poll {
        switch state {
        case .idle: return .idle
        case .released: return .released
        case .timedOut(_, let e): return .timedOut(e)
        case .waiting(let r):
            let phaseDeadline = r.startedAt + phaseTimeout
            let idleDeadline = r.lastArrivalAt + idleTimeout
            if now >= phaseDeadline || now >= idleDeadline {
                let idle = now >= idleDeadline && idleDeadline < phaseDeadline
                let error = RunnerError.phaseTimedOut(
                    phase: r.phase, tick: r.tick, missing: r.missing,
                    waited: now - r.startedAt,
                    limit: idle ? .idle(idleTimeout) : .phase(phaseTimeout))
                state = .timedOut(r, error)
                return .timedOut(error)
            }
            return .waiting(deadline: min(phaseDeadline, idleDeadline))
        }
    }

    /// Ends the round (released or timed out) and returns to idle.
    public mutating func reset() { state = .idle }
}
