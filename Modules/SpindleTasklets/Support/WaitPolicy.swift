import SpindleSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a waiting pool thread spends its time: spin for a while, then park.
///
/// The same choice OpenMP exposes as `OMP_WAIT_POLICY` / `KMP_BLOCKTIME`. A spinning thread
/// answers a fork, a join or a barrier within about a tenth of a microsecond; a parked thread
/// costs nothing while idle but takes tens of microseconds to wake on another core. Every
/// wait in a pool (an idle worker waiting for the next phase, a coordinator waiting for the
/// join, a lane waiting at a barrier) spins for `spin`, yielding the core now and then so an
/// oversubscribed machine still makes progress, and then parks on a condition variable.
public struct WaitPolicy: Sendable, Hashable, CustomStringConvertible {
    /// How long a waiter spins before it parks.
    public var spin: Duration

    /// Creates a policy that spins for `spin` before parking (negative durations mean zero).
    public init(spin: Duration) {
        self.spin = spin < .zero ? .zero : spin
    }

    /// Spins about 100 µs (roughly the cost of waking a parked thread on another core twice)
    /// and then parks: back-to-back launches hit spinning workers, an idle pool burns no CPU.
    public static let `default` = WaitPolicy(spin: .microseconds(100))

    /// Spins 200 ms before parking, like OpenMP's active policy with its default block time.
    public static let active = WaitPolicy(spin: .milliseconds(200))

    /// Parks at once (after a handful of checks), like OpenMP's passive policy.
    public static let passive = WaitPolicy(spin: .zero)

    /// Reads `SPINDLE_TASKLET_WAIT_POLICY`: `active`, `passive`, `default`, or a spin time in
    /// microseconds (`250`). Anything else, or no variable, gives `fallback`.
    public static func fromEnvironment(_ fallback: WaitPolicy = .default) -> WaitPolicy {
        guard let raw = getenv("SPINDLE_TASKLET_WAIT_POLICY") else { return fallback }
        let text = String(cString: raw).lowercased()
        switch text {
        case "active": return .active
        case "passive": return .passive
        case "default": return .default
        default:
            if let micros = Int64(text), micros >= 0 { return WaitPolicy(spin: .microseconds(micros)) }
            return fallback
        }
    }

    public var description: String { "WaitPolicy(spin: \(spin))" }

    /// The spin time in nanoseconds, saturated to `UInt64`.
    var spinNanoseconds: UInt64 { spin.saturatingNanoseconds }
}
