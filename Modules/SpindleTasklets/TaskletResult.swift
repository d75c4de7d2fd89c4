/// What a finished tasklet produced: its output bytes, the fuel it used and per-lane timings.
public struct TaskletResult: Sendable {
    /// The bytes the coordinator passed to its last `setOutput` (empty if it never did).
    public var output: [UInt8]
    /// Fuel debited by successful checkpoints over every lane.
    public var fuelUsed: UInt64
    /// Fuel debited per lane (index = lane; lane 0 is the coordinator).
    public var laneFuelUsed: [UInt64]
    /// Time each lane spent running its code (index = lane). Data lanes count the time inside
    /// phase bodies; the coordinator counts its closure minus the time it waited for joins.
    /// Measured with the pool's configured clock.
    public var laneBusyTime: [Duration]
    /// Time from the start of the coordinator closure to its end, on the pool's clock.
    public var elapsed: Duration

    /// Number of lanes that ran (the coordinator included).
    public var workerCount: Int { laneBusyTime.count }
}
