import Metrics
import SpindleKernel

/// What a runner publishes through swift-metrics (docs/operations.md), as `spindle_runner_*`:
/// the time of each phase round and of whole ticks, ticks completed and failed, rollbacks,
/// shard respawns, and the cross-shard edges and messages Act routed.
///
/// Every metric is created once, with the runner. The coordinator lane records one timer value
/// per phase round and, when a tick completes, the tick's counters; the runner's shell counts
/// failures, rollbacks and respawns as it handles them.
final class RunnerMetrics: Sendable {
    /// Wall time of each phase round (first shard started to barrier), by phase.
    private let phaseSense, phaseAct, phaseDecay: Metrics.Timer
    /// Wall time of a completed tick.
    let tickDuration: Metrics.Timer
    let ticks: Counter
    let edges: Counter
    let messages: Counter
    private let failedTimedOut, failedShard, failedLost, failedOther: Counter
    private let rollbacksTickStart, rollbacksCheckpoint: Counter
    let respawns: Counter

    init(factory: (any MetricsFactory)?) {
        func counter(_ name: String, _ d: [(String, String)] = []) -> Counter {
            let label = "spindle_runner_\(name)"
            if let factory { return Counter(label: label, dimensions: d, factory: factory) }
            return Counter(label: label, dimensions: d)
        }
        func timer(_ name: String, _ d: [(String, String)] = []) -> Metrics.Timer {
            let label = "spindle_runner_\(name)"
            if let factory { return Metrics.Timer(label: label, dimensions: d, factory: factory) }
            return Metrics.Timer(label: label, dimensions: d)
        }
        phaseSense = timer("phase_duration", [("phase", "sense")])
        phaseAct = timer("phase_duration", [("phase", "act")])
        phaseDecay = timer("phase_duration", [("phase", "decay")])
        tickDuration = timer("tick_duration")
        ticks = counter("ticks_total")
        edges = counter("cross_shard_edges_total")
        messages = counter("messages_total")
        failedTimedOut = counter("tick_failures_total", [("reason", "timed_out")])
        failedShard = counter("tick_failures_total", [("reason", "shard_failed")])
        failedLost = counter("tick_failures_total", [("reason", "shard_lost")])
        failedOther = counter("tick_failures_total", [("reason", "other")])
        rollbacksTickStart = counter("rollbacks_total", [("to", "tick_start")])
        rollbacksCheckpoint = counter("rollbacks_total", [("to", "checkpoint")])
        respawns = counter("shard_respawns_total")
    }

    // Times are given as the difference of two clock readings in nanoseconds: converting a
    // `Duration` (`components`) divides 128-bit values, several times the cost of a record.

    /// Records one phase round's wall time, from the instant it began to the instant it ended.
    func phase(_ phase: Phase, from begun: MonotonicInstant, to ended: MonotonicInstant) {
        let timer: Metrics.Timer
        switch phase {
        case .sense: timer = phaseSense
        case .act: timer = phaseAct
        case .decay: timer = phaseDecay
        }
        timer.recordNanoseconds(Self.nanoseconds(from: begun, to: ended))
    }

    /// Records a completed tick (which began at `started` and ended at `ended`) and what its
    /// Act routed.
    func completed(_ result: TickResult, from started: MonotonicInstant, to ended: MonotonicInstant) {
        ticks.increment()
        tickDuration.recordNanoseconds(Self.nanoseconds(from: started, to: ended))
        if !result.crossShardEdges.isEmpty { edges.increment(by: Int64(result.crossShardEdges.count)) }
        if result.messageCount > 0 { messages.increment(by: Int64(result.messageCount)) }
    }

    private static func nanoseconds(from a: MonotonicInstant, to b: MonotonicInstant) -> Int64 {
        b.nanoseconds >= a.nanoseconds ? Int64(clamping: b.nanoseconds - a.nanoseconds) : 0
    }

    /// Counts a failed tick under `tick_failures_total{reason}`, from the failure's root cause.
    func failed(_ error: RunnerError) {
        switch error.rootCause {
        case .phaseTimedOut: failedTimedOut.increment()
        case .shardFailed: failedShard.increment()
        case .shardLost: failedLost.increment()
        default: failedOther.increment()
        }
    }

    /// Counts every shard put back: to the failed tick's start, or to the last checkpoint.
    func rolledBack(toCheckpoint: Bool) {
        (toCheckpoint ? rollbacksCheckpoint : rollbacksTickStart).increment()
    }
}
