#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutex with a condition variable whose timed waits use the monotonic clock: the one
/// blocking primitive under Spindle's threads (worker mailboxes, thread exits, parked pool
/// lanes, results handed from a Swift task to a blocked thread).
///
/// `@unchecked Sendable`: the pthread mutex and condition live at stable heap addresses owned
/// by this object and are used only through pthread calls, which are thread-safe.
@usableFromInline
package final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    @usableFromInline
    package init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if os(Linux)
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

    @usableFromInline
    package func lock() { pthread_mutex_lock(mutex) }

    @usableFromInline
    package func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` with the lock held.
    @inlinable
    package func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Waits for a signal; the lock must be held (and is held again on return).
    @usableFromInline
    package func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits for a signal or until the monotonic clock reaches `deadline` (nanoseconds, as
    /// `monotonicNanoseconds()`); the lock must be held.
    /// - Returns: false when the deadline passed.
    @usableFromInline
    package func wait(untilNanoseconds deadline: UInt64) -> Bool {
        #if os(Linux)
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &ts) != ETIMEDOUT
        #else
        let now = monotonicNanoseconds()
        guard deadline > now else { return false }
        let left = deadline - now
        var ts = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
        return pthread_cond_timedwait_relative_np(condition, mutex, &ts) != ETIMEDOUT
        #endif
    }

    /// Waits, with the lock held, until `ready()` holds or `timeout` passes.
    /// - Returns: whether `ready()` holds.
    package func wait(timeout: Duration, until ready: () -> Bool) -> Bool {
        let deadline = monotonicNanoseconds() &+ timeout.saturatingNanoseconds
        return withLock {
            while !ready() {
                if !wait(untilNanoseconds: deadline) { return ready() }
            }
            return true
        }
    }

    /// Wakes one waiter.
    @usableFromInline
    package func signal() { pthread_cond_signal(condition) }

    /// Wakes every waiter.
    @usableFromInline
    package func broadcast() { pthread_cond_broadcast(condition) }
}

/// One value handed from a Swift task (or any thread) to a thread that blocks until it arrives.
///
/// `@unchecked Sendable`: `value` is written once under `lock` and read under it.
package final class BlockingResult<Value: Sendable>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var value: Value?

    package init() {}

    package func finish(_ v: Value) {
        lock.withLock {
            value = v
            lock.signal()
        }
    }

    package func wait() -> Value {
        lock.withLock {
            while true {
                if let value { return value }
                lock.wait()
            }
        }
    }
}
