import SpindleKernel

/// The coordinator's phase barrier as a value-type state machine: no I/O, no threads, no clock
/// reads — the shell passes `now` in and acts on what comes out.
///
/// A round waits for every expected shard to arrive for one (tick, phase). It fails when the
/// round has run longer than the phase timeout, or — when an idle timeout is set — when no
/// shard has arrived for that long; the error names the phase, the tick and the shards that
/// did not arrive.
///
/// ```
///  begin(tick, phase, shards, now) ──► waiting ──arrive(all)──► released
///                                        │
///                                        └──poll(now ≥ deadline)──► timedOut(error)
/// ```
///
/// Rounds reuse the barrier's storage: beginning and arriving allocate nothing once the
/// barrier has seen a round of the same size.
public struct PhaseBarrier: Sendable {
    /// How long a round may take in total.
    public var phaseTimeout: Duration
    /// How long a round may go without any arrival; nil: no separate limit (only the phase
    /// timeout applies). An idle timeout longer than the phase timeout never fires.
    public var idleTimeout: Duration?

    /// Where the barrier is.
    public enum Status: Sendable, Equatable {
        case idle
        case waiting
        case released
        case timedOut(RunnerError)
    }
    public private(set) var status: Status = .idle

    /// The current (or last) round's id, tick and phase.
    public private(set) var roundID: UInt64 = 0
    public private(set) var tick: UInt64 = 0
    public private(set) var phase: Phase = .sense
    /// The shards the round waits for, in increasing order.
    public private(set) var expected: [ShardID] = []
    private var arrivedFlags: [Bool] = []
    public private(set) var arrivedCount = 0
    public private(set) var startedAt: MonotonicInstant = .zero
    public private(set) var lastArrivalAt: MonotonicInstant = .zero
    private var nextRoundID: UInt64 = 1

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

    /// - Parameters:
    ///   - phaseTimeout: the longest a round may take.
    ///   - idleTimeout: the longest a round may go without an arrival (nil: no such limit).
    public init(phaseTimeout: Duration, idleTimeout: Duration? = nil) {
        self.phaseTimeout = phaseTimeout
        self.idleTimeout = idleTimeout
    }

    /// Starts a round for `phase` of `tick` expecting `shards`; abandons any earlier round.
    /// - Returns: the round's id, which arrivals must carry.
    @discardableResult
    public mutating func begin(tick: UInt64, phase: Phase, shards: [ShardID], now: MonotonicInstant) -> UInt64 {
        let id = nextRoundID
        nextRoundID &+= 1
        roundID = id
        self.tick = tick
        self.phase = phase
        if isStrictlyIncreasing(shards) {
            expected = shards
        } else {
            expected = Array(Set(shards)).sorted()
        }
        arrivedFlags.removeAll(keepingCapacity: true)
        arrivedFlags.append(contentsOf: repeatElement(false, count: expected.count))
        arrivedCount = 0
        startedAt = now
        lastArrivalAt = now
        status = expected.isEmpty ? .released : .waiting
        return id
    }

    /// Starts a round (any sequence of shards).
    @discardableResult
    public mutating func begin(tick: UInt64, phase: Phase, shards: some Sequence<ShardID>,
                               now: MonotonicInstant) -> UInt64 {
        begin(tick: tick, phase: phase, shards: Array(shards), now: now)
    }

    /// Records that `shard` finished round `round`.
    public mutating func arrive(_ shard: ShardID, round: UInt64, now: MonotonicInstant) -> Arrival {
        guard status == .waiting, round == roundID else { return .stale }
        guard let i = index(of: shard) else { return .unexpected }
        return arrive(at: i, now: now)
    }

    /// Records the arrival of the shard at position `index` of `expected` in the current round.
    mutating func arrive(at index: Int, now: MonotonicInstant) -> Arrival {
        guard status == .waiting else { return .stale }
        guard !arrivedFlags[index] else { return .duplicate }
        arrivedFlags[index] = true
        arrivedCount += 1
        lastArrivalAt = now
        if arrivedCount == expected.count {
            status = .released
            return .released
        }
        return .counted(remaining: expected.count - arrivedCount)
    }

    /// The position of `shard` in `expected`.
    public func index(of shard: ShardID) -> Int? {
        var lo = 0, hi = expected.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if expected[mid] < shard { lo = mid + 1 } else { hi = mid }
        }
        return lo < expected.count && expected[lo] == shard ? lo : nil
    }

    /// Whether `shard` arrived in the current round.
    public func hasArrived(_ shard: ShardID) -> Bool {
        index(of: shard).map { arrivedFlags[$0] } ?? false
    }

    /// The expected shards that have not arrived, in increasing order.
    public var missing: [ShardID] {
        expected.indices.filter { !arrivedFlags[$0] }.map { expected[$0] }
    }

    /// The earliest instant at which the waiting round times out.
    public var deadline: MonotonicInstant? {
        guard status == .waiting else { return nil }
        return currentDeadline.instant
    }

    private var currentDeadline: (instant: MonotonicInstant, idle: Bool) {
        let phaseDeadline = startedAt + phaseTimeout
        if let idleTimeout {
            let idleDeadline = lastArrivalAt + idleTimeout
            if idleDeadline < phaseDeadline { return (idleDeadline, true) }
        }
        return (phaseDeadline, false)
    }

    /// Checks the round against the clock; moves to `timedOut` when a deadline has passed.
    public mutating func poll(now: MonotonicInstant) -> Poll {
        switch status {
        case .idle: return .idle
        case .released: return .released
        case .timedOut(let e): return .timedOut(e)
        case .waiting:
            let (deadline, idle) = currentDeadline
            guard now >= deadline else { return .waiting(deadline: deadline) }
            let error = RunnerError.phaseTimedOut(
                phase: phase, tick: tick, missing: missing, waited: now - startedAt,
                limit: idle ? .idle(idleTimeout ?? .zero) : .phase(phaseTimeout))
            status = .timedOut(error)
            return .timedOut(error)
        }
    }

    /// Ends the round (released or timed out) and returns to idle.
    public mutating func reset() { status = .idle }

    private func isStrictlyIncreasing(_ ids: [ShardID]) -> Bool {
        var i = 1
        while i < ids.count {
            if !(ids[i - 1] < ids[i]) { return false }
            i += 1
        }
        return true
    }
}
