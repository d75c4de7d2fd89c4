/// Entry points for launching a tasklet: a fork-join job over `workers` lanes.
///
/// The front door (Tasklet+FrontDoor.swift): `parallelFor`, `parallelFor(chunksOf:)`,
/// `parallelReduce` and launches that return a value:
///
/// ```swift
/// try Tasklet.parallelFor(0..<n) { i in out[i] = f(i) }
/// let sum = try Tasklet.parallelReduce(0..<n, identity: 0, combine: +) { chunk in partialSum(chunk) }
/// ```
///
/// The reference model underneath:
///
/// ```swift
/// let result = try Tasklet.launch(workers: 3, shared: Counters(), scratch: { _ in Partial() },
///                                 fuel: .sharedPool(1_000_000)) { coord in
///     try coord.parallelForWorkers { w in
///         w.scratch.sum = compute(slice: w.dataIndex, of: w.dataWorkerCount)
///         try w.fuelCheckpoint(100)
///     }
///     let total = (0..<coord.dataWorkerCount).map { coord.dataScratch($0).sum }.reduce(0, +)
///     coord.setOutput(withUnsafeBytes(of: total) { Array($0) })
/// }
/// ```
public enum Tasklet {
    /// Runs a tasklet: the calling thread is lane 0 (the coordinator), pool threads are the
    /// data lanes 1…workers-1 during `parallelForWorkers` phases.
    ///
    /// - Parameters:
    ///   - workers: lanes including the coordinator (≥ 1; 1 means no data lanes).
    ///   - shared: the value every lane sees; communicate during a phase through its atomics.
    ///   - scratch: makes lane `i`'s scratch slot (called once per lane, on lane 0's thread, before the coordinator).
    ///   - fuel: the fuel policy (`.unlimited` by default).
    ///   - pool: the pool whose threads run the lanes (`TaskletPool.shared` by default).
    ///   - cancellation: a handle to cancel the launch from elsewhere.
    ///   - coordinator: lane 0's code.
    /// - Returns: output bytes, fuel used and per-lane busy times.
    /// - Throws: `TaskletError`: the first lane failure or fuel exhaustion (naming the lane),
    ///   the coordinator's own error as `.laneFailed(lane: 0, …)`, `.cancelled`, or
    ///   `.invalidConfiguration` before anything ran.
    @inlinable
    public static func launch<Shared: Sendable, Scratch: Sendable>(
        workers: Int = defaultLanes, shared: Shared, scratch: (Int) -> Scratch, fuel: FuelPolicy = .unlimited,
        pool: TaskletPool = .shared, cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Shared, Scratch>) throws -> Void
    ) throws(TaskletError) -> TaskletResult {
        try pool.launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel,
                        cancellation: cancellation, coordinator)
    }

    /// Runs a tasklet without blocking the caller's thread: lane 0 runs on the pool's runner
    /// thread and the caller suspends until the tasklet ends. Cancelling the awaiting task
    /// cancels the tasklet. Same results and errors as the blocking `launch`.
    public static func launch<Shared: Sendable, Scratch: Sendable>(
        workers: Int = defaultLanes, shared: Shared, scratch: @escaping @Sendable (Int) -> Scratch,
        fuel: FuelPolicy = .unlimited, pool: TaskletPool = .shared,
        _ coordinator: @escaping @Sendable (CoordinatorContext<Shared, Scratch>) throws -> Void
    ) async throws(TaskletError) -> TaskletResult {
        try await pool.launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel, coordinator)
    }
}
