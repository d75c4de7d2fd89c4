import CSpindleCycles
import SpindleSupport
import Synchronization

// The front door: loops and reductions over a range, and launches that return a value. Built
// on the reference model (lanes, phases, scratch); every lane computes, the coordinator too.

extension Tasklet {
    /// Lanes a launch uses when it does not say: the cores this process may run on.
    public static let defaultLanes = Int(spindle_active_cores())

    /// How a loop's indices are split among the lanes.
    public enum Schedule: Sendable, Hashable, CustomStringConvertible {
        /// Each lane takes one contiguous block of about `count / lanes` indices (like
        /// OpenMP's `schedule(static)`): no coordination at all; best for even work.
        case `static`
        /// Lanes claim chunks of `grain` indices from an atomic counter until none is left
        /// (OpenMP's `schedule(dynamic, grain)`): balances uneven work. `grain` 0 picks one
        /// (about eight chunks per lane).
        case dynamic(grain: Int)

        public var description: String {
            switch self {
            case .static: "static"
            case .dynamic(let grain): "dynamic(grain: \(grain))"
            }
        }
    }

    // MARK: parallelFor

    /// Runs `body(i)` for every `i` in `range`, on `lanes` lanes at once (the calling thread
    /// is one of them), and returns when all are done.
    ///
    /// ```swift
    /// try Tasklet.parallelFor(0..<pixels.count) { i in out[i] = shade(pixels[i]) }
    /// ```
    /// - Parameters:
    ///   - schedule: `.static` (default) or `.dynamic(grain:)`.
    ///   - lanes: lanes to use (default ``defaultLanes``; never more than there are indices).
    ///   - pool: the pool whose threads run the lanes. From inside a lane of the same pool the
    ///     loop runs inline on the calling lane.
    /// - Throws: `TaskletError.laneFailed(lane:error:)` when `body` threw (the other lanes stop
    ///   at their next index block), `.invalidConfiguration` for `lanes < 1` or a bad grain.
    @inlinable
    public static func parallelFor(_ range: Range<Int>, schedule: Schedule = .static, lanes: Int? = nil,
                                   pool: TaskletPool = .shared,
                                   _ body: @Sendable (Int) throws -> Void) throws(TaskletError) {
        try parallelFor(chunksOf: range, schedule: schedule, lanes: lanes, pool: pool) { chunk in
            for i in chunk { try body(i) }
        }
    }

    /// Runs `body` on chunks of `range` (disjoint, together covering it) on `lanes` lanes at
    /// once: with `.dynamic(grain:)` (the default) lanes claim chunks of `grain` indices from
    /// an atomic counter; with `.static` each lane gets one contiguous chunk.
    ///
    /// ```swift
    /// try Tasklet.parallelFor(chunksOf: 0..<n, schedule: .dynamic(grain: 4096)) { chunk in
    ///     for i in chunk { out[i] = f(i) }
    /// }
    /// ```
    @inlinable
    public static func parallelFor(chunksOf range: Range<Int>, schedule: Schedule = .dynamic(grain: 0),
                                   lanes: Int? = nil, pool: TaskletPool = .shared,
                                   _ body: @Sendable (Range<Int>) throws -> Void) throws(TaskletError) {
        let plan = try LoopPlan(range, schedule: schedule, lanes: lanes)
        if plan.lanes == 0 { return }
        try pool.launch(workers: plan.lanes, shared: plan) { coord -> Void in
            try coord.parallelForWorkers(includingCoordinator: true) { w in
                try w.shared.forEachChunk(lane: w.lane, cancelled: { w.isCancelled }, body)
            }
        }
    }

    /// Reduces `range`: `partial` computes each chunk's value, `combine` folds them (starting
    /// from `identity`), and the typed result comes back.
    ///
    /// ```swift
    /// let sum = try Tasklet.parallelReduce(0..<values.count, identity: 0, combine: +) { chunk in
    ///     values[chunk].reduce(0, +)
    /// }
    /// ```
    /// `combine` must be associative, and with `.dynamic` also commutative (which lane gets
    /// which chunk varies from run to run); with `.static` lanes fold their chunk, then lane
    /// results fold in lane order.
    @inlinable
    public static func parallelReduce<T: Sendable>(_ range: Range<Int>, schedule: Schedule = .static,
                                                   identity: T, combine: @Sendable (T, T) -> T,
                                                   lanes: Int? = nil, pool: TaskletPool = .shared,
                                                   _ partial: @Sendable (Range<Int>) throws -> T) throws(TaskletError) -> T {
        let plan = try LoopPlan(range, schedule: schedule, lanes: lanes)
        if plan.lanes == 0 { return identity }
        return try pool.launch(workers: plan.lanes, shared: plan, scratch: { _ in identity }) { coord -> T in
            try coord.parallelForWorkers(includingCoordinator: true) { w in
                var acc = w.scratch
                try w.shared.forEachChunk(lane: w.lane, cancelled: { w.isCancelled }) { chunk in
                    acc = combine(acc, try partial(chunk))
                }
                w.scratch = acc
            }
            var total = identity
            for lane in 0..<coord.workerCount { total = combine(total, coord.scratch(lane)) }
            return total
        }
    }

    // MARK: Async forms

    /// `parallelFor` from async code: lane 0 runs on the pool's runner thread, the caller
    /// suspends; cancelling the awaiting task stops the loop (`.cancelled`).
    public static func parallelFor(_ range: Range<Int>, schedule: Schedule = .static, lanes: Int? = nil,
                                   pool: TaskletPool = .shared,
                                   _ body: @escaping @Sendable (Int) throws -> Void) async throws(TaskletError) {
        try await parallelFor(chunksOf: range, schedule: schedule, lanes: lanes, pool: pool) { chunk in
            for i in chunk { try body(i) }
        }
    }

    /// `parallelFor(chunksOf:)` from async code.
    public static func parallelFor(chunksOf range: Range<Int>, schedule: Schedule = .dynamic(grain: 0),
                                   lanes: Int? = nil, pool: TaskletPool = .shared,
                                   _ body: @escaping @Sendable (Range<Int>) throws -> Void) async throws(TaskletError) {
        let plan = try LoopPlan(range, schedule: schedule, lanes: lanes)
        if plan.lanes == 0 { return }
        _ = try await pool.launch(workers: plan.lanes, shared: plan, scratch: { _ in () }) { coord in
            try coord.parallelForWorkers(includingCoordinator: true) { w in
                try w.shared.forEachChunk(lane: w.lane, cancelled: { w.isCancelled }, body)
            }
        }
    }

    /// `parallelReduce` from async code.
    public static func parallelReduce<T: Sendable>(_ range: Range<Int>, schedule: Schedule = .static,
                                                   identity: T, combine: @escaping @Sendable (T, T) -> T,
                                                   lanes: Int? = nil, pool: TaskletPool = .shared,
                                                   _ partial: @escaping @Sendable (Range<Int>) throws -> T)
        async throws(TaskletError) -> T {
        let plan = try LoopPlan(range, schedule: schedule, lanes: lanes)
        if plan.lanes == 0 { return identity }
        return try await pool.launch(workers: plan.lanes, shared: plan, scratch: { _ in identity }) { coord -> T in
            try coord.parallelForWorkers(includingCoordinator: true) { w in
                var acc = w.scratch
                try w.shared.forEachChunk(lane: w.lane, cancelled: { w.isCancelled }) { chunk in
                    acc = combine(acc, try partial(chunk))
                }
                w.scratch = acc
            }
            var total = identity
            for lane in 0..<coord.workerCount { total = combine(total, coord.scratch(lane)) }
            return total
        }
    }

    // MARK: Launches that return a value

    /// Runs a tasklet whose coordinator returns a value (the reference model's byte output,
    /// `setOutput`, stays available); see `launch(workers:shared:scratch:…)`.
    @inlinable
    public static func launch<Shared: Sendable, Scratch: Sendable, Output>(
        workers: Int = defaultLanes, shared: Shared, scratch: (Int) -> Scratch, fuel: FuelPolicy = .unlimited,
        pool: TaskletPool = .shared, cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Shared, Scratch>) throws -> Output
    ) throws(TaskletError) -> Output {
        try pool.launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel,
                        cancellation: cancellation, coordinator)
    }

    /// A launch with a shared value and no scratch, returning the coordinator's value.
    @inlinable
    public static func launch<Shared: Sendable, Output>(
        workers: Int = defaultLanes, shared: Shared, fuel: FuelPolicy = .unlimited,
        pool: TaskletPool = .shared, cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Shared, Void>) throws -> Output
    ) throws(TaskletError) -> Output {
        try pool.launch(workers: workers, shared: shared, fuel: fuel, cancellation: cancellation, coordinator)
    }

    /// A launch with scratch slots and no shared value, returning the coordinator's value.
    @inlinable
    public static func launch<Scratch: Sendable, Output>(
        workers: Int = defaultLanes, scratch: (Int) -> Scratch, fuel: FuelPolicy = .unlimited,
        pool: TaskletPool = .shared, cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Void, Scratch>) throws -> Output
    ) throws(TaskletError) -> Output {
        try pool.launch(workers: workers, shared: (), scratch: scratch, fuel: fuel, cancellation: cancellation, coordinator)
    }

    /// A launch with neither a shared value nor scratch, returning the coordinator's value.
    @inlinable
    public static func launch<Output>(
        workers: Int = defaultLanes, fuel: FuelPolicy = .unlimited,
        pool: TaskletPool = .shared, cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Void, Void>) throws -> Output
    ) throws(TaskletError) -> Output {
        try pool.launch(workers: workers, shared: (), fuel: fuel, cancellation: cancellation, coordinator)
    }

    /// The async form of the value-returning launch.
    public static func launch<Shared: Sendable, Scratch: Sendable, Output: Sendable>(
        workers: Int = defaultLanes, shared: Shared, scratch: @escaping @Sendable (Int) -> Scratch,
        fuel: FuelPolicy = .unlimited, pool: TaskletPool = .shared,
        _ coordinator: @escaping @Sendable (CoordinatorContext<Shared, Scratch>) throws -> Output
    ) async throws(TaskletError) -> Output {
        try await pool.launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel, coordinator)
    }

    /// The async form with neither a shared value nor scratch.
    public static func launch<Output: Sendable>(
        workers: Int = defaultLanes, fuel: FuelPolicy = .unlimited, pool: TaskletPool = .shared,
        _ coordinator: @escaping @Sendable (CoordinatorContext<Void, Void>) throws -> Output
    ) async throws(TaskletError) -> Output {
        try await pool.launch(workers: workers, shared: (), scratch: { @Sendable _ in () }, fuel: fuel, coordinator)
    }
}

extension TaskletPool {
    /// Runs a tasklet whose coordinator returns a value; see `Tasklet.launch`.
    @inlinable
    public func launch<Shared: Sendable, Scratch: Sendable, Output>(
        workers: Int = Tasklet.defaultLanes, shared: Shared, scratch: (Int) -> Scratch, fuel: FuelPolicy = .unlimited,
        cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Shared, Scratch>) throws -> Output
    ) throws(TaskletError) -> Output {
        var output: Output?
        _ = try core.launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel,
                            cancellation: cancellation) { coord in output = try coordinator(coord) }
        // A launch that returned ran its coordinator to the end.
        guard let output else { throw .cancelled }
        return output
    }

    /// A value-returning launch with a shared value and no scratch.
    @inlinable
    public func launch<Shared: Sendable, Output>(
        workers: Int = Tasklet.defaultLanes, shared: Shared, fuel: FuelPolicy = .unlimited,
        cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Shared, Void>) throws -> Output
    ) throws(TaskletError) -> Output {
        try launch(workers: workers, shared: shared, scratch: { _ in () }, fuel: fuel, cancellation: cancellation, coordinator)
    }

    /// The async form of the value-returning launch.
    public func launch<Shared: Sendable, Scratch: Sendable, Output: Sendable>(
        workers: Int = Tasklet.defaultLanes, shared: Shared, scratch: @escaping @Sendable (Int) -> Scratch,
        fuel: FuelPolicy = .unlimited,
        _ coordinator: @escaping @Sendable (CoordinatorContext<Shared, Scratch>) throws -> Output
    ) async throws(TaskletError) -> Output {
        let box = OutputBox<Output>()
        _ = try await launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel) { coord in
            box.set(try coordinator(coord))
        }
        guard let output = box.value else { throw .cancelled }
        return output
    }
}

/// The coordinator's value of an async launch, handed from the runner thread to the caller.
final class OutputBox<Value: Sendable>: Sendable {
    private let slot = Mutex<Value?>(nil)
    func set(_ value: Value) { slot.withLock { $0 = value } }
    var value: Value? { slot.withLock { $0 } }
}

/// How a loop's range is split among lanes, shared by the lanes of its launch.
@usableFromInline
final class LoopPlan: Sendable {
    private let headerPad = HeaderPad()
    @usableFromInline let lower: Int
    @usableFromInline let count: Int
    /// Lanes the loop runs on (0 for an empty range).
    @usableFromInline let lanes: Int
    /// Chunk size for `.dynamic`; 0 for `.static`.
    @usableFromInline let grain: Int
    /// The next unclaimed index offset (`.dynamic`), on a line of its own.
    @usableFromInline let next = Atomic<Int>(0)

    @inlinable
    init(_ range: Range<Int>, schedule: Tasklet.Schedule, lanes requested: Int?) throws(TaskletError) {
        let wanted = requested ?? Tasklet.defaultLanes
        guard wanted >= 1 else {
            throw .invalidConfiguration("lanes = \(wanted): a loop needs at least 1 lane")
        }
        lower = range.lowerBound
        count = range.count
        switch schedule {
        case .static:
            grain = 0
            lanes = min(wanted, count)
        case .dynamic(let g):
            guard g >= 0 else { throw .invalidConfiguration("dynamic(grain: \(g)): the grain must not be negative") }
            let chosen = g > 0 ? g : max(1, count / max(1, wanted * 8))
            grain = chosen
            lanes = min(wanted, (count + chosen - 1) / chosen)
        }
    }

    /// Calls `body` for each chunk lane `lane` takes, until none is left or the loop was
    /// cancelled (another lane failed).
    @inlinable
    func forEachChunk(lane: Int, cancelled: () -> Bool,
                      _ body: (Range<Int>) throws -> Void) rethrows {
        if grain == 0 {
            let lo = lane * count / lanes
            let hi = (lane + 1) * count / lanes
            if lo < hi { try body((lower + lo)..<(lower + hi)) }
            return
        }
        while !cancelled() {
            let start = next.add(grain, ordering: .relaxed).oldValue
            if start >= count { return }
            try body((lower + start)..<(lower + min(start + grain, count)))
        }
    }
}
