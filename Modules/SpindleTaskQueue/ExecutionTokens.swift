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

    private struct Waiter {
        var id: UInt64
        var grant: @Sendable () -> Void
    }

    private struct State {
        var available: Int
        var high: Deque<Waiter> = []
        var low: Deque<Waiter> = []
        var nextWaiter: UInt64 = 1
    }

    private let state: Mutex<State>
    /// How many tokens exist.
    public let limit: Int

    public init(limit: Int) {
        self.limit = max(1, limit)
        state = Mutex(State(available: max(1, limit)))
    }

    /// Tokens free right now.
    public var available: Int { state.withLock { $0.available } }

    /// Waiters queued right now.
    public var waiting: Int { state.withLock { $0.high.count + $0.low.count } }

    /// Takes a token if one is free.
    public func tryAcquire() -> Bool {
        state.withLock { s in
            guard s.available > 0 else { return false }
            s.available -= 1
            return true
        }
    }

    /// Takes a token now (returns nil) or queues `grant`, which runs (on a releasing
    /// thread) once a token is handed over; returns the waiter's ticket for ``abandon(_:)``.
    public func acquire(priority: Priority, grant: @escaping @Sendable () -> Void) -> UInt64? {
        state.withLock { s -> UInt64? in
            if s.available > 0 && s.high.isEmpty && s.low.isEmpty {
                s.available -= 1
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
            s.available = min(limit, s.available + 1)
            return nil
        }
        next?.grant()
    }
}

/// The processor count without Foundation.
enum ProcessInfoLite {
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
