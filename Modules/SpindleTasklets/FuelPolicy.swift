/// How much work a tasklet may do, counted in the units its lanes pass to `fuelCheckpoint`.
public enum FuelPolicy: Sendable, Hashable, CustomStringConvertible {
    /// No limit; checkpoints still count what they debit into `TaskletResult.fuelUsed`.
    case unlimited
    /// `budget` split evenly over every lane (coordinator included); the first
    /// `budget % workers` lanes get one unit more. A lane that asks for more than its slice
    /// fails the tasklet with `TaskletError.fuelExhausted(lane:…)`.
    case perLane(UInt64)
    /// One pool that every lane debits atomically; the first debit it cannot cover fails the
    /// tasklet (once) with `TaskletError.fuelExhausted` naming that lane.
    case sharedPool(UInt64)

    public var description: String {
        switch self {
        case .unlimited: return "unlimited"
        case .perLane(let b): return "perLane(\(b))"
        case .sharedPool(let b): return "sharedPool(\(b))"
        }
    }

    /// The slice of `budget` that `lane` gets among `lanes`.
    static func slice(of budget: UInt64, lane: Int, lanes: Int) -> UInt64 {
        let n = UInt64(lanes)
        return budget / n + (UInt64(lane) < budget % n ? 1 : 0)
    }
}
