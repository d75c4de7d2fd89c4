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
///
/// `package`: the runner's coordinator waits for remote shards' replies with the same
/// spin-then-park policy (`spinThenPark(_:on:timeoutNanoseconds:until:)`).
package final class Parker: @unchecked Sendable {
    // @unchecked Sendable: the pthread mutex and condition live at stable heap addresses owned
    // by this object; they are only used through pthread calls, which are thread-safe.
    private let headerPad = HeaderPad()
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let waiters = Atomic<Int>(0)

    package init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if os(Linux)
        // Timed parks measure against the monotonic clock, like every spin budget here.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
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

    /// Blocks until `ready()` returns true or the monotonic clock reaches `deadline`
    /// (nanoseconds, as `monotonicNanoseconds()`); `ready` is evaluated under the lock.
    /// - Returns: whether `ready()` held.
    package func park(until ready: () -> Bool, deadline: UInt64) -> Bool {
        pthread_mutex_lock(mutex)
        waiters.add(1, ordering: .sequentiallyConsistent)
        var isReady = ready()
        while !isReady && monotonicNanoseconds() < deadline {
            var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            pthread_cond_timedwait(condition, mutex, &ts)
            isReady = ready()
        }
        waiters.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(mutex)
        return isReady
    }

    /// Wakes every parked thread; costs one atomic load when nobody is parked.
    package func wakeAll() {
        guard waiters.load(ordering: .sequentiallyConsistent) > 0 else { return }
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}

/// Monotonic time in nanoseconds, for spin budgets (never the injected clock: a ManualClock
/// would make a spin last forever).
@inlinable @inline(__always)
package func monotonicNanoseconds() -> UInt64 {
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
    var yieldFrom: UInt64 = 0
    var i: UInt32 = 0
    while true {
        i &+= 1
        if ready() { return false }
        if i & 63 == 0 {
            let now = monotonicNanoseconds()
            if deadline == 0 {
                deadline = now &+ spinNanoseconds
                // A pool with no more threads than cores waits a short while without yielding:
                // most waits (a join, the next phase of a run of phases) end within a few
                // microseconds, and a yield on a loaded machine can hand the core to another
                // process for a whole time slice.
                yieldFrom = yieldMask == 1023 ? now &+ min(spinNanoseconds / 4, quietSpinNanoseconds) : now
            } else if now >= deadline {
                break
            }
            if i & yieldMask == 0 && now >= yieldFrom { sched_yield() }
        }
    }
    parker.park(until: ready)
    return true
}

/// How long a waiter in a pool with no more threads than cores spins before its first yield.
@usableFromInline
let quietSpinNanoseconds: UInt64 = 20_000

/// Waits until `ready()` holds or `timeoutNanoseconds` pass: spins for `spinNanoseconds`
/// (yielding now and then, as every pool wait does), then parks on `parker` until woken or
/// the time is up.
/// - Returns: whether `ready()` held.
package func spinThenPark(_ spinNanoseconds: UInt64, on parker: Parker, timeoutNanoseconds: UInt64,
                          until ready: () -> Bool) -> Bool {
    if ready() { return true }
    let start = monotonicNanoseconds()
    let deadline = start &+ timeoutNanoseconds
    let spinUntil = min(deadline, start &+ spinNanoseconds)
    var i: UInt32 = 0
    while true {
        i &+= 1
        if ready() { return true }
        if i & 63 == 0 {
            if monotonicNanoseconds() >= spinUntil { break }
            if i & 1023 == 0 { sched_yield() }
        }
    }
    return parker.park(until: ready, deadline: deadline)
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
