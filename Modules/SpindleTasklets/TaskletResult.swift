/// What a finished tasklet produced: its output bytes, the fuel it used and per-lane timings.
public struct TaskletResult: Sendable {
    /// The bytes the coordinator passed to its last `setOutput` (empty if it never did).
    public var output: [UInt8]
    /// Fuel debited by successful checkpoints over every lane.
    public var fuelUsed: UInt64
    /// Per-lane figures (index = lane; lane 0 is the coordinator).
    public var lanes: [LaneStatistics]
    /// Time from the start of the coordinator closure to its end, on the pool's clock.
    public var elapsed: Duration

    /// Fuel debited per lane (index = lane; lane 0 is the coordinator).
    public var laneFuelUsed: [UInt64] { lanes.map(\.fuelUsed) }

    /// Time each lane spent running its code (index = lane). Data lanes count the time inside
    /// phase bodies; the coordinator counts its closure minus the time it waited for joins.
    /// Measured with the pool's configured clock.
    public var laneBusyTime: [Duration] { lanes.map(\.busyTime) }

    /// Number of lanes that ran (the coordinator included).
    public var workerCount: Int { lanes.count }
}

/// One lane's share of a tasklet: the time it spent running its code and the fuel it debited.
public struct LaneStatistics: Sendable, Hashable {
    /// Data lanes: time inside phase bodies. The coordinator: its closure minus join waits.
    public var busyTime: Duration { .nanoseconds(Int64(clamping: busyNanoseconds)) }
    /// Fuel this lane's checkpoints debited.
    public var fuelUsed: UInt64
    /// `busyTime` in nanoseconds of the pool's clock.
    public var busyNanoseconds: UInt64

    public init(busyNanoseconds: UInt64, fuelUsed: UInt64) {
        self.busyNanoseconds = busyNanoseconds
        self.fuelUsed = fuelUsed
    }
}
