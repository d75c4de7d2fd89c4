import SpindleSupport
import Synchronization

/// What the coordinator hands one data lane for a phase: written by the coordinator, read by
/// the lane, all on one cache line.
///
/// The coordinator writes the fields, then bumps the lane's doorbell ticket (sequentially
/// consistent), which sits in the same line right after them; the lane reads the fields only
/// after it saw the bump, and the coordinator writes them again only after the lane reported
/// the phase done. The ticket orders every access. One line, so a fork moves one line to the
/// lane (a doorbell on a line of its own made launches slower: docs/benchmarks.md, "Design
/// measurements").
@usableFromInline
struct PhaseOrder: ~Copyable {
    /// Lanes of the launch, coordinator included (at most `UInt16.max`, see `PoolCore`).
    @usableFromInline var laneCount: UInt16 = 0
    /// The launch's fuel policy (`FuelMode.rawValue`).
    @usableFromInline var fuelMode: UInt8 = 0
    /// Whether this is the launch's first phase: the lane then resets its fuel figures.
    var firstPhase = false
    /// Whether the coordinator runs this phase's body too (it then counts in the barrier, so
    /// even a lone data lane must depart when it finishes).
    var coordinatorJoins = false
    /// Runs the lane with the launch's types restored (kept alive by the pool's frame).
    @usableFromInline var entry: Unmanaged<LaneEntry>?
    /// Room for the phase's `PhaseBody` (a closure: two words), so that a lane finds the body
    /// on the order line instead of a line of the coordinator's stack. Typed memory only while
    /// a phase runs: the coordinator initialises it before the ticket bump and deinitialises
    /// it after the join.
    @usableFromInline var bodyStorage: (UInt, UInt) = (0, 0)
    /// The launch's shared value, on the coordinator's stack.
    @usableFromInline var shared: UnsafeRawPointer?
    /// This lane's own scratch slot.
    @usableFromInline var scratch: UnsafeMutableRawPointer?
    /// This lane's fuel slice under `.perLane`.
    var fuelBudget: UInt64 = 0
}

/// What one lane reports about the current launch: written by the lane (during and at the end
/// of each phase), read by the coordinator after the join. Its own cache line.
///
/// `done` is the ticket of the last phase the lane finished; the lane writes the plain fields
/// before it stores `done` (sequentially consistent), the coordinator reads them after it saw
/// that store. The coordinator's own report (lane 0) is only ever touched by the coordinator.
@usableFromInline
struct LaneReport: ~Copyable {
    let done = Atomic<UInt32>(0)
    /// When the lane woke up for its latest phase if it had parked, else 0 (pool clock). A
    /// spinning lane sees the fork within a fraction of a microsecond, so its busy time is
    /// counted from the coordinator's fork stamp and it reads the clock once per phase.
    var wokeAt: UInt64 = 0
    /// When the lane finished its latest phase body (pool clock).
    var phaseEnd: UInt64 = 0
    /// Fuel the lane debited in this launch.
    var fuelUsed: UInt64 = 0
    /// What is left of the lane's slice under `.perLane`.
    var fuelLeft: UInt64 = 0

    /// Prepares the fuel fields for a launch (a data lane does it on the launch's first phase).
    mutating func resetFuel(budget: UInt64) {
        if fuelUsed != 0 { fuelUsed = 0 }
        if fuelLeft != budget { fuelLeft = budget }
    }
}

/// The fuel policy of a launch without its budget (the budget lives in the lanes' reports).
@usableFromInline
enum FuelMode: UInt8 {
    case unlimited, perLane, sharedPool
}

/// A lane's `PhaseOrder` with its doorbell, and its `LaneReport`, each on cache lines of its
/// own, at stable addresses.
///
/// `@unchecked Sendable`: the two lines are shared between the coordinator and one lane under
/// the ticket / done protocol described on each type; the memory lives as long as this box.
final class LaneLines: @unchecked Sendable {
    static let lineSize = 128
    let order: UnsafeMutablePointer<PhaseOrder>
    /// The lane's doorbell: the ticket the coordinator bumps to start a phase, in the order's
    /// line right after the `PhaseOrder` fields.
    let doorbell: UnsafeMutablePointer<Atomic<UInt32>>
    /// `order.pointee.bodyStorage`'s address.
    let body: UnsafeMutableRawPointer
    let report: UnsafeMutablePointer<LaneReport>
    private let raw: UnsafeMutableRawPointer

    init() {
        // Two 128-byte blocks: the adjacent-line prefetcher pairs 64-byte lines, so a 64-byte
        // separation alone would still let the two writers disturb each other.
        raw = .allocate(byteCount: 2 * Self.lineSize, alignment: Self.lineSize)
        order = raw.bindMemory(to: PhaseOrder.self, capacity: 1)
        order.initialize(to: PhaseOrder())
        body = withUnsafeMutablePointer(to: &order.pointee.bodyStorage) { UnsafeMutableRawPointer($0) }
        precondition(MemoryLayout<PhaseOrder>.size <= 64 && body + 16 <= raw + 64,
                     "PhaseOrder no longer fits one 64-byte cache line")
        report = (raw + Self.lineSize).bindMemory(to: LaneReport.self, capacity: 1)
        report.initialize(to: LaneReport())
        let doorbellOffset = (MemoryLayout<PhaseOrder>.size + 3) & ~3
        precondition(doorbellOffset + 4 <= 64, "PhaseOrder and its doorbell no longer fit one 64-byte cache line")
        doorbell = (raw + doorbellOffset).bindMemory(to: Atomic<UInt32>.self, capacity: 1)
        doorbell.initialize(to: Atomic<UInt32>(0))
    }

    deinit {
        order.deinitialize(count: 1)
        report.deinitialize(count: 1)
        doorbell.deinitialize(count: 1)
        raw.deallocate()
    }
}

/// How a pool thread runs its lane of a phase without knowing the launch's types: made by
/// `parallelForWorkers` for the launch's `Shared` and `Scratch`, it builds the lane's
/// `WorkerContext` from the order and calls the phase body in the order's `bodyStorage`
/// (whose address is the second argument).
@usableFromInline
typealias LaneFunction = (UnsafeMutablePointer<PhaseOrder>, UnsafeMutableRawPointer, UnsafeMutablePointer<LaneReport>,
                          LaunchControl, Int) -> Void

/// A `LaneFunction` in a box the lanes call through an unretained pointer: calling a `let`
/// closure of a borrowed object retains nothing, so no reference count moves between cores.
/// The pool's frame keeps the box of the latest launch types and reuses it while they repeat.
@usableFromInline
final class LaneEntry: @unchecked Sendable {
    // @unchecked Sendable: immutable; the closure only reads what its order points at.
    private let headerPad = HeaderPad()
    @usableFromInline let run: LaneFunction

    @inlinable
    init(run: @escaping LaneFunction) { self.run = run }
}

/// The phase body as the lanes reach it, in their order line (a struct keeps the closure in
/// its natural representation; behind a bare generic pointer it would be re-abstracted
/// through a thunk).
@usableFromInline
struct PhaseBody<Shared: Sendable, Scratch: Sendable> {
    @usableFromInline let run: @Sendable (WorkerContext<Shared, Scratch>) throws -> Void

    @inlinable
    init(run: @escaping @Sendable (WorkerContext<Shared, Scratch>) throws -> Void) { self.run = run }
}
