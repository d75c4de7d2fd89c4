import SpindleKernel
import SpindleSupport

/// State behind the built-in syscalls: named FIFOs, the hold table, record rings, counters,
/// latches, limits and the seeded RNG. Event subscriptions live in the installed program.
struct SyscallState: Sendable {
    /// Named FIFOs of `SerializeEnqueue` / `SerializeDequeue`.
    var serialize: SerializeQueues
    /// Values stashed by `HoldStash` until `HoldFlush`.
    var hold: HoldTable
    /// Per-name rings of `Record`.
    var records: RecordRings
    /// Counters bumped by `IncrMetric`.
    var counters: [String: Int64] = [:]
    /// Groups of node-scoped `Any` ops that have fired, with when they re-arm.
    var anyFiredGroups: [String: MonotonicInstant] = [:]
    /// (group, execution) pairs whose execution-scoped `Any` op has fired.
    var anyFiredInExecution: Set<AnyLatch> = []
    /// (op index, execution) pairs whose `DeadlineMatch` has fired (once per execution).
    var deadlineMatchFired: Set<DeadlineLatch> = []
    /// Semaphores of `LimitAcquire` / `LimitRelease`.
    var limits = Limits()
    /// The node's seeded RNG (`RngU64`, backoff jitter is seeded separately).
    var rng: SplitMix64

    /// Key of the execution-scoped `Any` latch.
    struct AnyLatch: Hashable, Sendable {
        var group: String
        var execution: ExecID
    }

    /// Key of the `DeadlineMatch` latch.
    struct DeadlineLatch: Hashable, Sendable {
        var op: Int
        var execution: ExecID
    }
}
