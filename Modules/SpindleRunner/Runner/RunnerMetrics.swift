import Metrics

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

    /// Records one phase round's wall time.
    func phase(_ phase: Phase, took duration: Duration) {
        let timer: Metrics.Timer
        switch phase {
        case .sense: timer = phaseSense
        case .act: timer = phaseAct
        case .decay: timer = phaseDecay
        }
        timer.record(duration: duration)
    }

    /// Records a completed tick: its wall time and what its Act routed.
    func completed(_ result: TickResult) {
        ticks.increment()
        tickDuration.record(duration: result.duration)
        if !result.crossShardEdges.isEmpty { edges.increment(by: Int64(result.crossShardEdges.count)) }
        if result.messageCount > 0 { messages.increment(by: Int64(result.messageCount)) }
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
