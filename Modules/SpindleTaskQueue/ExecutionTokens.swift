import DequeModule
import Synchronization

/// A process-wide limit on how many workers run tasks at once, shared by several queues.
///
/// A queue configured with tokens takes one before a worker starts on a batch and gives it
/// back when the worker falls idle. Waiters of ``Priority/high`` are served before waiters
/// of ``Priority/low``; FIFO within a priority. (The reference's `workmgr`.)
public final class ExecutionTokens: Sendable {
    public enum Priority: Sendable { case high, low }

    /// One limiter for the whole process, sized to the machine's cores.
    public static let processWide = ExecutionTokens(limit: ProcessInfoLite.activeProcessorCount)

    fileprivate struct Waiter {
        var id: UInt64
        var grant: @Sendable () -> Void
    }

    fileprivate struct State {
        /// Tokens handed out and not given back. Never clamped, so a release too many shows
        /// up as a negative count (see `lowWater`).
        var outstanding = 0
        var highWater = 0
        var lowWater = 0
        var high: Deque<Waiter> = []
        var low: Deque<Waiter> = []
        var nextWaiter: UInt64 = 1
    }

    private let state: Mutex<State>
    /// How many tokens exist.
    public let limit: Int

    public init(limit: Int) {
        self.limit = max(1, limit)
        state = Mutex(State())
    }

    /// Tokens free right now.
    public var available: Int { state.withLock { max(0, min(limit, limit - $0.outstanding)) } }

    /// Tokens held right now.
    public var inUse: Int { state.withLock { $0.outstanding } }

    /// The most tokens ever held at once, and the fewest (below zero only if a token was given
    /// back twice): for tests of the queues sharing these tokens.
    package var extremes: (most: Int, fewest: Int) { state.withLock { ($0.highWater, $0.lowWater) } }

    /// Waiters queued right now.
    public var waiting: Int { state.withLock { $0.high.count + $0.low.count } }

    /// Takes a token if one is free.
    public func tryAcquire() -> Bool {
        state.withLock { s in
            guard s.outstanding < limit else { return false }
            s.take()
            return true
        }
    }

    /// Takes a token now (returns nil) or queues `grant`, which runs (on a releasing
    /// thread) once a token is handed over; returns the waiter's ticket for ``abandon(_:)``.
    public func acquire(priority: Priority, grant: @escaping @Sendable () -> Void) -> UInt64? {
        state.withLock { s -> UInt64? in
            if s.outstanding < limit && s.high.isEmpty && s.low.isEmpty {
                s.take()
                return nil
            }
            let id = s.nextWaiter
            s.nextWaiter += 1
            switch priority {
            case .high: s.high.append(Waiter(id: id, grant: grant))
            case .low: s.low.append(Waiter(id: id, grant: grant))
            }
            return id
        }
    }

    /// Waits for a token.
    public func acquire(priority: Priority = .low) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            if acquire(priority: priority, grant: { c.resume() }) == nil { c.resume() }
        }
    }

    /// Withdraws a queued waiter. Returns false when it was already granted (the caller then
    /// owns a token and must release it).
    @discardableResult
    public func abandon(_ ticket: UInt64) -> Bool {
        state.withLock { s in
            if let i = s.high.firstIndex(where: { $0.id == ticket }) { s.high.remove(at: i); return true }
            if let i = s.low.firstIndex(where: { $0.id == ticket }) { s.low.remove(at: i); return true }
            return false
        }
    }

    /// Gives a token back, handing it straight to the first waiter if there is one.
    public func release() {
        let next = state.withLock { s -> Waiter? in
            if let w = s.high.popFirst() ?? s.low.popFirst() { return w }
            s.outstanding -= 1
            s.lowWater = min(s.lowWater, s.outstanding)
            return nil
        }
        next?.grant()
    }
}

extension ExecutionTokens.State {
    mutating func take() {
        outstanding += 1
        highWater = max(highWater, outstanding)
    }
}

/// The processor count without Foundation.
@usableFromInline
enum ProcessInfoLite {
    @usableFromInline
    static var activeProcessorCount: Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 4
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#endif
