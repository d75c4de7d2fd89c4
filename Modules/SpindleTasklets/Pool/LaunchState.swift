import SpindleKernel

/// The part of a launch that pool threads see: "run lane `lane` of the current phase".
///
/// Pool threads are not generic; a launch's generic state subclasses this, so starting a
/// phase stores one reference instead of building a closure per lane.
class LaneJob: @unchecked Sendable {
    // @unchecked Sendable: subclasses are handed to pool threads through the phase's
    // releasing ticket store and used only until the lane's join decrement.
    func runLane(_ lane: Int) {}
}

/// One launch's typed state: shared value, scratch slots, output and the current phase body.
final class LaunchState<Shared: Sendable, Scratch: Sendable>: LaneJob, @unchecked Sendable {
    // @unchecked Sendable: `scratch` holds one slot per lane; during a phase only its own lane
    // touches a slot, between phases only the coordinator does (the fork's release and the
    // join's acquire order the two). `body` and `output` are written by the coordinator only,
    // `body` before the fork and after the join.
    let core: PoolCore
    let control: LaunchControl
    let shared: Shared
    let laneCount: Int
    let scratch: UnsafeMutablePointer<Scratch>
    let clock: any SpindleClock
    var body: ((WorkerContext<Shared, Scratch>) throws -> Void)?
    var output: [UInt8] = []
    /// Time the coordinator spent waiting for joins, subtracted from its busy time.
    var joinWaitNanoseconds: UInt64 = 0
    /// Set when the coordinator closure returned: a context that escaped it can no longer
    /// start phases on a pool that another launch may own by then.
    var finished = false

    init(core: PoolCore, lanes: Int, shared: Shared, scratch factory: (Int) throws -> Scratch) rethrows {
        self.core = core
        self.control = core.control
        self.shared = shared
        self.laneCount = lanes
        self.clock = core.clock
        let slots = UnsafeMutablePointer<Scratch>.allocate(capacity: lanes)
        var made = 0
        do {
            while made < lanes {
                (slots + made).initialize(to: try factory(made))
                made += 1
            }
        } catch {
            slots.deinitialize(count: made)
            slots.deallocate()
            throw error
        }
        self.scratch = slots
    }

    deinit {
        scratch.deinitialize(count: laneCount)
        scratch.deallocate()
    }

    override func runLane(_ lane: Int) {
        guard let body else { return }
        let start = clock.now().nanoseconds
        do {
            try body(WorkerContext(launch: self, lane: lane))
        } catch {
            control.recordThrown(error, lane: lane)
        }
        // The end stamp doubles as the coordinator's join time (saves it a clock read).
        let end = clock.now().nanoseconds
        control.addBusy(lane: lane, nanoseconds: end &- min(end, start))
        control.setPhaseEnd(lane: lane, nanoseconds: end)
    }
}
