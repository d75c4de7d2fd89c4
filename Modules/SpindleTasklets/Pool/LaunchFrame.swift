/// The coordinator's side of a pool's launches: one per pool, reused by every launch.
///
/// Launches on one pool run one at a time (the gate), so a single frame holds the running
/// launch's bookkeeping and its scratch storage; a steady-state launch allocates nothing here.
/// Only the thread that holds the gate (the coordinator) touches it, except `scratch` slots,
/// which each data lane reaches through its `PhaseOrder` while a phase runs.
///
/// The mutable fields sit behind one pointer (`FrameState`) rather than in class properties:
/// every access to a class's `var` pays a dynamic exclusivity check, and a launch makes dozens.
@usableFromInline
final class LaunchFrame: @unchecked Sendable {
    // @unchecked Sendable: `state` is read and written by the coordinator under the pool's
    // gate only; a data lane touches only its own scratch slot, between the ticket bump that
    // starts a phase and its `done` store.
    @usableFromInline let control: LaunchControl
    @usableFromInline let state: UnsafeMutablePointer<FrameState>
    /// The coordinator's (lane 0's) report.
    @usableFromInline let coordinatorReport: UnsafeMutablePointer<LaneReport>

    @usableFromInline
    struct FrameState {
        /// Bumped by every launch: a context holding an older value escaped its launch.
        @usableFromInline var generation: UInt64 = 0
        /// Whether a launch is running (between `begin` and `end`).
        @usableFromInline var active = false
        @usableFromInline var laneCount = 0
        var fuel = FuelPolicy.unlimited
        /// Phases the running launch has started.
        var phases = 0
        /// Time the coordinator spent waiting for joins (ticks of the pool's `now()`),
        /// subtracted from its busy time.
        var joinWaitTicks: UInt64 = 0
        @usableFromInline var output: [UInt8] = []
        /// The statistics array of the latest result. Once its caller dropped that result,
        /// this is the only reference and the next launch refills the buffer in place.
        var statistics: [LaneStatistics] = []
        /// The running launch's shared value (on the coordinator's stack).
        @usableFromInline var shared: UnsafeRawPointer?
        /// Scratch slots, one per lane, `scratchStride` bytes apart (a multiple of the
        /// cache-line pair, so lanes writing their own slots never share a line).
        @usableFromInline var scratchBase: UnsafeMutableRawPointer
        @usableFromInline var scratchStride = 0
        var scratchBytes: Int
        var scratchAlignment: Int
    }

    init(control: LaunchControl) {
        self.control = control
        coordinatorReport = .allocate(capacity: 1)
        coordinatorReport.initialize(to: LaneReport())
        let bytes = 8 * LaneLines.lineSize
        state = .allocate(capacity: 1)
        state.initialize(to: FrameState(
            scratchBase: .allocate(byteCount: bytes, alignment: LaneLines.lineSize),
            scratchBytes: bytes, scratchAlignment: LaneLines.lineSize))
    }

    deinit {
        state.pointee.scratchBase.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
        coordinatorReport.deinitialize(count: 1)
        coordinatorReport.deallocate()
    }

    @inlinable var generation: UInt64 { state.pointee.generation }

    /// The lane entry of the latest launch types, and those types' identity.
    // @exclusivity(unchecked): only the coordinator holding the gate touches them.
    @exclusivity(unchecked) private var laneEntry: LaneEntry?
    @exclusivity(unchecked) private var laneEntryKey: ObjectIdentifier?

    /// The lane entry for the types identified by `key`, made by `make` when they differ from
    /// the previous phase's. The frame keeps it alive.
    @usableFromInline
    func laneEntry(for key: ObjectIdentifier, make: () -> LaneEntry) -> Unmanaged<LaneEntry> {
        if key != laneEntryKey {
            laneEntry = make()
            laneEntryKey = key
        }
        return Unmanaged.passUnretained(laneEntry.unsafelyUnwrapped)
    }
    @inlinable var laneCount: Int { state.pointee.laneCount }

    /// Starts a launch of `lanes` lanes whose scratch values have `size` and `alignment`.
    func begin(lanes: Int, fuel: FuelPolicy, scratchSize: Int, scratchAlignment alignment: Int) {
        state.pointee.generation &+= 1
        state.pointee.active = true
        state.pointee.laneCount = lanes
        state.pointee.fuel = fuel
        state.pointee.phases = 0
        state.pointee.joinWaitTicks = 0
        if !state.pointee.output.isEmpty { state.pointee.output = [] }
        coordinatorReport.pointee.resetFuel(budget: fuelBudget(lane: 0))
        let unit = max(LaneLines.lineSize, alignment)
        let stride = (max(scratchSize, 1) + unit - 1) / unit * unit
        let needed = stride * lanes
        if needed > state.pointee.scratchBytes || alignment > state.pointee.scratchAlignment {
            state.pointee.scratchBase.deallocate()
            state.pointee.scratchBytes = max(needed, state.pointee.scratchBytes * 2)
            state.pointee.scratchAlignment = max(alignment, state.pointee.scratchAlignment)
            state.pointee.scratchBase = .allocate(byteCount: state.pointee.scratchBytes,
                                                  alignment: state.pointee.scratchAlignment)
        }
        state.pointee.scratchStride = stride
    }

    /// Ends the running launch: contexts of it no longer work.
    func end() {
        state.pointee.active = false
        state.pointee.shared = nil
    }

    /// Whether a context made for launch `generation` may still act.
    @inlinable @inline(__always)
    func isCurrent(_ generation: UInt64) -> Bool {
        state.pointee.active && state.pointee.generation == generation
    }

    /// Lane `lane`'s scratch slot.
    @inlinable @inline(__always)
    func scratchSlot(_ lane: Int) -> UnsafeMutableRawPointer {
        state.pointee.scratchBase + lane * state.pointee.scratchStride
    }

    /// Lane `lane`'s fuel slice under `.perLane` (0 otherwise).
    func fuelBudget(lane: Int) -> UInt64 {
        if case .perLane(let budget) = state.pointee.fuel {
            return FuelPolicy.slice(of: budget, lane: lane, lanes: state.pointee.laneCount)
        }
        return 0
    }
}
