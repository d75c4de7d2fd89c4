import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A place where threads park until a condition holds, with a cheap check for "anyone parked?".
///
/// A waker first makes its change visible (a sequentially consistent atomic write), then calls
/// `wakeAll()`, which only takes the lock when `waiters` is non-zero. A parker counts itself in
/// `waiters` (sequentially consistent) under the lock before it re-checks its condition, so
/// either the waker sees the parker or the parker sees the change: no wake-up is lost.
final class Parker: @unchecked Sendable {
    // @unchecked Sendable: the pthread mutex and condition live at stable heap addresses owned
    // by this object; they are only used through pthread calls, which are thread-safe.
    private let headerPad = HeaderPad()
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let waiters = Atomic<Int>(0)

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Blocks until `ready()` returns true; `ready` is evaluated under the lock.
    func park(until ready: () -> Bool) {
        pthread_mutex_lock(mutex)
        waiters.add(1, ordering: .sequentiallyConsistent)
        while !ready() {
            pthread_cond_wait(condition, mutex)
        }
        waiters.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(mutex)
    }

    /// Wakes every parked thread; costs one atomic load when nobody is parked.
    func wakeAll() {
        guard waiters.load(ordering: .sequentiallyConsistent) > 0 else { return }
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}

/// Monotonic time in nanoseconds, for spin budgets (never the injected clock: a ManualClock
/// would make a spin last forever).
@inlinable @inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Waits until `ready()` holds: spins for the policy's budget, then parks on `parker`.
///
/// Every 64 checks the spinner reads the clock; every `yieldMask + 1` checks (1 024 by
/// default, 64 in a pool with more threads than cores) it yields its core, so on an
/// oversubscribed machine the thread it waits for gets to run.
@inline(__always)
/// - Returns: whether it parked (false when `ready()` held while spinning).
@discardableResult
func spinThenPark(_ spinNanoseconds: UInt64, yieldMask: UInt32 = 1023, on parker: Parker,
                  until ready: () -> Bool) -> Bool {
    if ready() { return false }
    var deadline: UInt64 = 0
    var i: UInt32 = 0
    while true {
        i &+= 1
        if ready() { return false }
        if i & 63 == 0 {
            let now = monotonicNanoseconds()
            if deadline == 0 {
                deadline = now &+ spinNanoseconds
            } else if now >= deadline {
                break
            }
            if i & yieldMask == 0 { sched_yield() }
        }
    }
    parker.park(until: ready)
    return true
}

/// 64 bytes of nothing. Declared first in a class whose fields other cores read, it keeps
/// those fields off the cache line of the object's header: every retain and release writes
/// the reference count there, and a core that only reads the fields would otherwise lose the
/// line to each of them.
@usableFromInline
struct HeaderPad: Sendable {
    private let words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    @usableFromInline init() {}
}
