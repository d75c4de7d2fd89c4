import CSpindleCycles
import SpindleSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The CPU's cycle counter as a clock for lane timing, calibrated once per process.
///
/// A launch reads the pool's clock a few times on its critical path (its start and end, each
/// phase's fork, each lane's phase end). Where the kernel itself keeps time with an invariant,
/// synchronised TSC, reading it directly is cheaper than `clock_gettime`, so the pool keeps its
/// stamps in cycles and converts only the durations it reports.
@usableFromInline
enum CycleClock {
    /// Nanoseconds per cycle, or nil when the counter cannot stand in for the monotonic
    /// clock (see `spindle_cycles_usable`). Measured against CLOCK_MONOTONIC over a 2 ms sleep
    /// the first time a pool asks (relative error ~1e-5).
    @usableFromInline
    static let nanosecondsPerCycle: Double? = calibrate()

    private static func calibrate() -> Double? {
        guard spindle_cycles_usable() != 0 else { return nil }
        let startNanoseconds = monotonicNanoseconds()
        let startCycles = spindle_cycles()
        var pause = timespec(tv_sec: 0, tv_nsec: 2_000_000)
        var left = timespec()
        while nanosleep(&pause, &left) != 0 && errno == EINTR { pause = left }
        let endNanoseconds = monotonicNanoseconds()
        let endCycles = spindle_cycles()
        guard endCycles > startCycles, endNanoseconds > startNanoseconds else { return nil }
        let ratio = Double(endNanoseconds - startNanoseconds) / Double(endCycles - startCycles)
        return ratio.isFinite && ratio > 0 ? ratio : nil
    }
}
