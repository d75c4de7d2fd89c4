import SpindleKernel

/// State behind the built-in syscalls: named FIFOs, the hold table, record rings, counters,
/// latches, limits and the seeded RNG. Event subscriptions live in the installed program.
public struct SyscallState: Sendable {
    /// Named FIFOs of `SerializeEnqueue` / `SerializeDequeue`.
    public var serialize: SerializeQueues
    /// Values stashed by `HoldStash` until `HoldFlush`.
    public var hold: HoldTable
    /// Per-name rings of `Record`.
    public var records: RecordRings
    /// Counters bumped by `IncrMetric`.
    public var counters: [String: Int64] = [:]
    /// Groups of node-scoped `Any` ops that have fired, with when they re-arm.
    public var anyFiredGroups: [String: MonotonicInstant] = [:]
    /// (group, execution) pairs whose execution-scoped `Any` op has fired.
    public var anyFiredInExecution: Set<AnyLatch> = []
    /// (op index, execution) pairs whose `DeadlineMatch` has fired (once per execution).
    public var deadlineMatchFired: Set<DeadlineLatch> = []
    /// Semaphores of `LimitAcquire` / `LimitRelease`.
    public var limits = Limits()
    /// The node's seeded RNG (`RngU64`, backoff jitter is seeded separately).
    public var rng: SeededRandom

    /// Key of the execution-scoped `Any` latch.
    public struct AnyLatch: Hashable, Sendable {
        public var group: String
        public var execution: ExecID
    }

    /// Key of the `DeadlineMatch` latch.
    public struct DeadlineLatch: Hashable, Sendable {
        public var op: Int
        public var execution: ExecID
    }
}
