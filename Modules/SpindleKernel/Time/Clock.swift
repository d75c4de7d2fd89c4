import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A point on a monotonic nanosecond time line. Only differences between instants of the same
/// clock mean anything.
public struct MonotonicInstant: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
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
public protocol SpindleClock: Sendable {
    /// Monotonic time: never goes backwards.
    func now() -> MonotonicInstant
    /// Wall-clock time in nanoseconds since the Unix epoch; may step backwards. Used only as the
    /// physical part of hybrid logical clock stamps.
    func wallNanoseconds() -> UInt64
}

/// The system clocks: `CLOCK_MONOTONIC` and `CLOCK_REALTIME`.
public struct SystemClock: SpindleClock {
    public init() {}

    @inlinable
    public func now() -> MonotonicInstant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicInstant(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    public func wallNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// A clock that moves only when a test tells it to. Thread-safe.
///
/// Its monotonic time and its wall time are separate so a test can step wall time backwards
/// (to exercise the hybrid logical clock) while monotonic time only advances.
public final class ManualClock: SpindleClock {
    private struct State {
        var mono: UInt64
        var wall: UInt64
    }
    private let state: Mutex<State>

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
    }

    /// Moves monotonic time to `instant` if it is later than now.
    public func advance(to instant: MonotonicInstant) {
        state.withLock { s in
            if instant.nanoseconds > s.mono {
                s.wall &+= instant.nanoseconds - s.mono
                s.mono = instant.nanoseconds
            }
        }
    }

    /// Sets wall time, which may go backwards (monotonic time is unchanged).
    public func setWall(_ nanoseconds: UInt64) {
        state.withLock { $0.wall = nanoseconds }
    }
}
