import SpindleSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A point on a monotonic nanosecond time line. Only differences between instants of the same
/// clock mean anything.
public struct MonotonicInstant: Hashable, Comparable, Sendable, Codable, CustomStringConvertible, InstantProtocol {
    public var nanoseconds: UInt64

    @inlinable
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static let zero = MonotonicInstant(nanoseconds: 0)

    @inlinable
    public static func < (a: Self, b: Self) -> Bool { a.nanoseconds < b.nanoseconds }

    /// The instant `d` later (saturating; negative durations move earlier, not below zero).
    @inlinable
    public static func + (a: Self, d: Duration) -> Self {
        let n = d.nanosecondsClamped
        if n >= 0 {
            let (sum, overflow) = a.nanoseconds.addingReportingOverflow(UInt64(n))
            return Self(nanoseconds: overflow ? .max : sum)
        }
        let m = UInt64(n.magnitude)
        return Self(nanoseconds: a.nanoseconds > m ? a.nanoseconds - m : 0)
    }

    /// The duration from `b` to `a` (negative when `a` is earlier).
    @inlinable
    public static func - (a: Self, b: Self) -> Duration {
        a >= b ? .nanoseconds(Int64(clamping: a.nanoseconds - b.nanoseconds))
               : .nanoseconds(-Int64(clamping: b.nanoseconds - a.nanoseconds))
    }

    public var description: String { "t+\(nanoseconds)ns" }

    // InstantProtocol, so the kernel's clocks are Swift `Clock`s.
    public func advanced(by duration: Duration) -> MonotonicInstant { self + duration }
    public func duration(to other: MonotonicInstant) -> Duration { other - self }
}

extension Duration {
    /// The whole duration in nanoseconds, clamped to `Int64`.
    @inlinable
    public var nanosecondsClamped: Int64 {
        let (s, atto) = components
        let (ns, o1) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return s < 0 ? .min : .max }
        let (sum, o2) = ns.addingReportingOverflow(atto / 1_000_000_000)
        if o2 { return s < 0 ? .min : .max }
        return sum
    }
}

/// The clock every Spindle module takes as a parameter. No module reads time any other way.
///
/// Every clock can sleep: on `SystemClock` `sleep(for:)` waits real time, on `ManualClock` it
/// returns when a test has advanced the clock far enough. `asClock` adapts any of them to
/// Swift's `Clock` protocol (whose `now` is a property, where this protocol's is a method).
public protocol SpindleClock: Sendable {
    /// Monotonic time: never goes backwards.
    func now() -> MonotonicInstant
    /// Wall-clock time in nanoseconds since the Unix epoch; may step backwards. Used only as the
    /// physical part of hybrid logical clock stamps.
    func wallNanoseconds() -> UInt64
    /// Suspends until `deadline` on this clock.
    /// - Throws: `CancellationError` when the calling task is cancelled first.
    func sleep(until deadline: MonotonicInstant) async throws
}

extension SpindleClock {
    /// This clock as a Swift `Clock` (for APIs that take one: `Task.sleep(for:clock:)`,
    /// AsyncAlgorithms' timers, …).
    public var asClock: SpindleSwiftClock { SpindleSwiftClock(self) }

    /// Suspends for `duration` on this clock.
    /// - Throws: `CancellationError` when the calling task is cancelled first.
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now() + duration)
    }
}

/// The system clocks: `CLOCK_MONOTONIC` and `CLOCK_REALTIME`.
public struct SystemClock: SpindleClock {
    public init() {}

    public func sleep(until deadline: MonotonicInstant) async throws {
        let left = deadline - now()
        if left > .zero { try await Task.sleep(for: left) }
        try Task.checkCancellation()
    }

    @inlinable
    public func now() -> MonotonicInstant {
        MonotonicInstant(nanoseconds: monotonicNanoseconds())
    }

    public func wallNanoseconds() -> UInt64 { wallClockNanoseconds() }
}

/// A clock that moves only when a test tells it to. Thread-safe.
///
/// Its monotonic time and its wall time are separate so a test can step wall time backwards
/// (to exercise the hybrid logical clock) while monotonic time only advances.
public final class ManualClock: SpindleClock {
    private struct Sleeper {
        var deadline: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }
    private struct State {
        var mono: UInt64
        var wall: UInt64
        var sleepers: [UInt64: Sleeper] = [:]
        var nextSleeper: UInt64 = 0
    }
    private let state: Mutex<State>

    /// Suspends until a test advances the clock to `deadline` (returns at once if it is not
    /// later than now).
    /// - Throws: `CancellationError` when the calling task is cancelled first.
    public func sleep(until deadline: MonotonicInstant) async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextSleeper += 1
            return s.nextSleeper
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let ready = state.withLock { s -> Bool in
                    if deadline.nanoseconds <= s.mono { return true }
                    s.sleepers[id] = Sleeper(deadline: deadline.nanoseconds, continuation: c)
                    return false
                }
                if ready { c.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// How many tasks are sleeping on this clock (a test may wait for them to arrive before
    /// advancing).
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// Resumes the sleepers whose deadline has come (call after moving time).
    private func wakeDue() {
        let due = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            let ready = s.sleepers.filter { $0.value.deadline <= s.mono }
            for key in ready.keys { s.sleepers.removeValue(forKey: key) }
            return ready.sorted { $0.value.deadline < $1.value.deadline }.map(\.value.continuation)
        }
        for c in due { c.resume() }
    }

    /// - Parameters:
    ///   - start: the initial monotonic instant.
    ///   - wall: the initial wall time in nanoseconds since the epoch.
    public init(start: MonotonicInstant = .zero, wall: UInt64 = 1_700_000_000_000_000_000) {
        state = Mutex(State(mono: start.nanoseconds, wall: wall))
    }

    public func now() -> MonotonicInstant {
        state.withLock { MonotonicInstant(nanoseconds: $0.mono) }
    }

    public func wallNanoseconds() -> UInt64 {
        state.withLock { $0.wall }
    }

    /// Moves both monotonic and wall time forward by `d` (a negative `d` is ignored).
    public func advance(by d: Duration) {
        let n = d.nanosecondsClamped
        guard n > 0 else { return }
        state.withLock {
            $0.mono &+= UInt64(n)
            $0.wall &+= UInt64(n)
        }
        wakeDue()
    }

    /// Moves monotonic time to `instant` if it is later than now.
    public func advance(to instant: MonotonicInstant) {
        state.withLock { s in
            if instant.nanoseconds > s.mono {
                s.wall &+= instant.nanoseconds - s.mono
                s.mono = instant.nanoseconds
            }
        }
        wakeDue()
    }

    /// Sets wall time, which may go backwards (monotonic time is unchanged).
    public func setWall(_ nanoseconds: UInt64) {
        state.withLock { $0.wall = nanoseconds }
    }
}

/// A `SpindleClock` seen as a Swift `Clock`.
public struct SpindleSwiftClock: Clock {
    public typealias Instant = MonotonicInstant
    public let base: any SpindleClock

    public init(_ base: any SpindleClock) { self.base = base }

    public var now: MonotonicInstant { base.now() }
    public var minimumResolution: Duration { .nanoseconds(1) }

    public func sleep(until deadline: MonotonicInstant, tolerance: Duration?) async throws {
        try await base.sleep(until: deadline)
    }
}
