import SpindleKernel
import Synchronization

/// A first-come-first-served lock for async code: the runner's public operations take turns.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func lock() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let acquired: Bool = state.withLock { s in
                if !s.locked {
                    s.locked = true
                    return true
                }
                s.waiters.append(c)
                return false
            }
            if acquired { c.resume() }
        }
    }

    func unlock() {
        let next: CheckedContinuation<Void, Never>? = state.withLock { s in
            if s.waiters.isEmpty {
                s.locked = false
                return nil
            }
            return s.waiters.removeFirst()   // stays locked: handed to the next in line
        }
        next?.resume()
    }
}

/// How a run of ticks inside one pool launch ended.
struct SegmentOutcome: Sendable {
    /// The ticks that completed, in order.
    var results: [TickResult] = []
    /// Why it stopped early.
    var failure: SegmentFailure?
}

/// A tick that failed inside a launch, and what was already done about it.
struct SegmentFailure: Error, Sendable {
    var error: RunnerError
    var tick: UInt64
    /// Remote shards lost in the tick (connection closed).
    var lost: [ShardID] = []
    /// Whether the in-process shards were rolled back to the tick's start.
    var localRolledBack = false
    /// Remote shards that kept a rollback point for the tick and still need to roll back.
    var remoteRollbacks: [ShardID] = []
    /// Whether the tick's start can be restored at all (every shard kept a rollback point).
    var rollbackPossible = false
    /// The error was a phase timeout reported before the stragglers returned.
    var timedOut = false
}

/// The answer to one launch, given once: by the launch when it ends, or earlier by the
/// watchdog (or the coordinator lane) when a phase times out while shards still run.
final class SegmentCompletion: Sendable {
    private struct State {
        var results: [TickResult] = []
        var outcome: SegmentOutcome?
        var waiter: CheckedContinuation<SegmentOutcome, Never>?
    }
    private let state = Mutex(State())

    /// A tick completed (coordinator lane).
    func append(_ result: TickResult) {
        state.withLock { s in
            if s.outcome == nil { s.results.append(result) }
        }
    }

    /// The ticks completed so far.
    var results: [TickResult] { state.withLock { $0.results } }

    var isResolved: Bool { state.withLock { $0.outcome != nil } }

    /// Answers with the ticks completed so far and `failure`; the first answer wins.
    @discardableResult
    func resolve(failure: SegmentFailure?) -> Bool {
        let (waiter, outcome): (CheckedContinuation<SegmentOutcome, Never>?, SegmentOutcome?) = state.withLock { s in
            guard s.outcome == nil else { return (nil, nil) }
            let o = SegmentOutcome(results: s.results, failure: failure)
            s.outcome = o
            defer { s.waiter = nil }
            return (s.waiter, o)
        }
        if let waiter, let outcome { waiter.resume(returning: outcome) }
        return outcome != nil
    }

    func wait() async -> SegmentOutcome {
        await withCheckedContinuation { c in
            let ready: SegmentOutcome? = state.withLock { s in
                if let o = s.outcome { return o }
                s.waiter = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

/// The launch still running after its answer was given (a timed-out phase's stragglers, and
/// the rollback that follows them); the next operation waits for it.
final class InFlight: Sendable {
    private struct Waiter {
        var continuation: CheckedContinuation<[ShardID]?, Never>
        var timer: Task<Void, Never>?
    }
    private struct State {
        var running = false
        /// The shards still running a phase that timed out.
        var busy: [ShardID] = []
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    /// A launch started.
    func begin() { state.withLock { $0.running = true; $0.busy = [] } }

    /// The launch's answer went out while `shards` still run a phase that timed out.
    func markBusy(_ shards: [ShardID]) { state.withLock { $0.busy = shards } }

    /// The launch and everything after it ended.
    func end() {
        let waiters: [Waiter] = state.withLock { s in
            s.running = false
            s.busy = []
            let w = Array(s.waiters.values)
            s.waiters.removeAll()
            return w
        }
        for w in waiters {
            w.timer?.cancel()
            w.continuation.resume(returning: nil)
        }
    }

    /// Waits up to `limit` (nil: however long it takes) for the launch in flight to end.
    /// - Returns: nil when nothing is in flight any more; else the shards still busy when the
    ///   time was up.
    func waitUntilIdle(limit: Duration?) async -> [ShardID]? {
        await withCheckedContinuation { (c: CheckedContinuation<[ShardID]?, Never>) in
            let id: UInt64? = state.withLock { s in
                guard s.running else { return nil }
                s.nextWaiter += 1
                s.waiters[s.nextWaiter] = Waiter(continuation: c)
                return s.nextWaiter
            }
            guard let id else {
                c.resume(returning: nil)
                return
            }
            guard let limit else { return }
            let timer = Task { [weak self] in
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                self?.expire(id)
            }
            let gone = state.withLock { s in
                guard s.waiters[id] != nil else { return true }
                s.waiters[id]!.timer = timer
                return false
            }
            if gone { timer.cancel() }
        }
    }

    private func expire(_ id: UInt64) {
        let (waiter, busy): (Waiter?, [ShardID]) = state.withLock { s in
            (s.waiters.removeValue(forKey: id), s.busy)
        }
        // Time is up and the launch still runs: report who holds it.
        waiter?.continuation.resume(returning: busy)
    }

    var isRunning: Bool { state.withLock { $0.running } }
}
