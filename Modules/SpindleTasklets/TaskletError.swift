/// Why a tasklet launch, a barrier or a fuel checkpoint failed; every case names its lane.
///
/// Lane 0 is the coordinator; lanes 1… are the data workers (`WorkerContext.lane`).
public enum TaskletError: Error, CustomStringConvertible, Sendable {
    /// The launch was refused before any lane ran: zero lanes, too many lanes for the pool,
    /// a nested launch on the pool that runs the caller, or a pool that is shut down.
    case invalidConfiguration(String)
    /// The tasklet was cancelled (`CoordinatorContext.cancel()`, a `TaskletCancellation`, the
    /// awaiting task's cancellation, or a peer lane's failure seen from a barrier).
    case cancelled
    /// `lane` asked for more fuel than it had: its slice under `.perLane`, or what was left
    /// of the pool under `.sharedPool`.
    case fuelExhausted(lane: Int, requested: UInt64, remaining: UInt64)
    /// `lane`'s closure threw `error`; the other lanes were cancelled.
    case laneFailed(lane: Int, error: any Error)

    public var description: String {
        switch self {
        case .invalidConfiguration(let why):
            return "tasklet: invalid configuration: \(why)"
        case .cancelled:
            return "tasklet: cancelled"
        case .fuelExhausted(let lane, let requested, let remaining):
            return "tasklet: lane \(lane) exhausted its fuel (asked for \(requested), \(remaining) left)"
        case .laneFailed(let lane, let error):
            return "tasklet: lane \(lane) failed: \(error)"
        }
    }

    /// The lane the error names, if it names one.
    public var lane: Int? {
        switch self {
        case .fuelExhausted(let lane, _, _), .laneFailed(let lane, _): return lane
        case .invalidConfiguration, .cancelled: return nil
        }
    }

    /// Whether this is `.cancelled`.
    public var isCancellation: Bool {
        if case .cancelled = self { return true }
        return false
    }
}
