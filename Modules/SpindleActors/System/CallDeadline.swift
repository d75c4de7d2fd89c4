import SpindleKernel

/// The deadline distributed calls made by the current task must meet: an instant on a clock.
///
/// Set it with `withDeadline(_:clock:_:)`; a remote call sends the time left as its budget
/// (`Envelope.deadlineBudget`), and the remote side runs the function under a deadline of
/// that budget, so calls it makes in turn inherit what remains.
public struct CallDeadline: Sendable, CustomStringConvertible {
    /// The instant the deadline passes, on `clock`.
    public let instant: MonotonicInstant
    public let clock: any SpindleClock

    public init(instant: MonotonicInstant, clock: any SpindleClock) {
        self.instant = instant
        self.clock = clock
    }

    /// Time left (negative once passed).
    public var remaining: Duration { instant - clock.now() }

    /// The deadline of the current task, if one is set.
    public static var current: CallDeadline? { stored }

    @TaskLocal static var stored: CallDeadline?

    public var description: String { "deadline in \(remaining)" }
}

/// Runs `body` with a deadline `budget` from now: every distributed call it makes (and every
/// call those functions make remotely) must answer before then, or fails with
/// `ActorCallError.timedOut`. Nested deadlines keep the earlier one.
///
/// ```swift
/// let n = try await withDeadline(.seconds(2)) { try await counter.add(1) }
/// ```
/// - Parameter clock: the clock the budget is measured on (a `ManualClock` in tests).
public func withDeadline<T>(_ budget: Duration, clock: any SpindleClock = SystemClock(),
                            isolation: isolated (any Actor)? = #isolation,
                            _ body: () async throws -> T) async rethrows -> T {
    let proposed = CallDeadline(instant: clock.now() + budget, clock: clock)
    let effective: CallDeadline
    if let outer = CallDeadline.current, outer.remaining <= budget {
        effective = outer
    } else {
        effective = proposed
    }
    return try await CallDeadline.$stored.withValue(effective, operation: body, isolation: isolation)
}
