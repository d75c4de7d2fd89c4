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
@usableFromInline
package final class Parker: Sendable {
    private let headerPad = HeaderPad()
    private let lock = ConditionLock()
    private let waiters = Atomic<Int>(0)

    package init() {}

    /// Blocks until `ready()` returns true; `ready` is evaluated under the lock.
    package func park(until ready: () -> Bool) {
        lock.withLock {
            waiters.add(1, ordering: .sequentiallyConsistent)
            while !ready() { lock.wait() }
            waiters.subtract(1, ordering: .sequentiallyConsistent)
        }
    }

    /// Blocks until `ready()` returns true or the monotonic clock reaches `deadline`
    /// (nanoseconds, as `monotonicNanoseconds()`).
    /// - Returns: whether `ready()` held.
    package func park(until ready: () -> Bool, deadline: UInt64) -> Bool {
        lock.withLock {
            waiters.add(1, ordering: .sequentiallyConsistent)
            var isReady = ready()
            while !isReady && monotonicNanoseconds() < deadline {
                _ = lock.wait(untilNanoseconds: deadline)
                isReady = ready()
            }
            waiters.subtract(1, ordering: .sequentiallyConsistent)
            return isReady
        }
    }

    /// Wakes every parked thread; costs one atomic load when nobody is parked.
    package func wakeAll() {
        guard waiters.load(ordering: .sequentiallyConsistent) > 0 else { return }
        lock.withLock { lock.broadcast() }
    }
}

/// The runtime's one waiting policy: check `ready()` in a loop for `spinNanoseconds`, then
/// park on `parker`.
///
/// Every 64 checks the spinner reads the clock; every `yieldMask + 1` checks (1 024 by default;
/// pools with more threads than cores pass 63) it yields its core, so on an oversubscribed
/// machine the thread it waits for gets to run.
/// - Returns: whether it parked (false when `ready()` held while spinning).
@discardableResult @inline(__always)
package func spinThenPark(_ spinNanoseconds: UInt64, yieldMask: UInt32 = 1023, on parker: Parker,
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

/// The same policy with an end: spins for `spinNanoseconds`, then parks until woken, until
/// `ready()` holds or until `timeoutNanoseconds` have passed since the call.
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
package struct HeaderPad: Sendable {
    private let words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    @usableFromInline package init() {}
}
