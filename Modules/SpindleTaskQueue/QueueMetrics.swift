import Metrics

/// What a task queue publishes through swift-metrics (docs/operations.md), as
/// `spindle_queue_*` with the dimension `kind` (the task kind's name): tasks enqueued,
/// completed and failed (by reason), and gauges of live workers and queued tasks.
///
/// Not generic, so a specialised `TaskQueue<MyKind>` calls into it without generic metadata.
/// The queue calls it under its lock, only when the scheduler's counters or depth changed
/// (`TaskQueue.publishMetrics`), which keeps the gauges' values in the order they happened.
@usableFromInline
final class QueueMetrics: Sendable {
    let enqueued: Counter
    let completed: Counter
    let failedError, failedTimedOut, failedCancelled, failedExpired: Counter
    let failedWorkerLost, failedMarshal, failedShutDown: Counter
    let workers: Gauge
    let depth: Gauge

    @usableFromInline
    init(kind: String, factory: (any MetricsFactory)?) {
        let d = [("kind", kind)]
        func counter(_ name: String, _ extra: [(String, String)] = []) -> Counter {
            let label = "spindle_queue_\(name)"
            if let factory { return Counter(label: label, dimensions: d + extra, factory: factory) }
            return Counter(label: label, dimensions: d + extra)
        }
        func gauge(_ name: String) -> Gauge {
            let label = "spindle_queue_\(name)"
            if let factory { return Gauge(label: label, dimensions: d, factory: factory) }
            return Gauge(label: label, dimensions: d)
        }
        enqueued = counter("enqueued_total")
        completed = counter("completed_total")
        failedError = counter("failed_total", [("reason", "error")])
        failedTimedOut = counter("failed_total", [("reason", "timed_out")])
        failedCancelled = counter("failed_total", [("reason", "cancelled")])
        failedExpired = counter("failed_total", [("reason", "expired")])
        failedWorkerLost = counter("failed_total", [("reason", "worker_lost")])
        failedMarshal = counter("failed_total", [("reason", "marshal_failed")])
        failedShutDown = counter("failed_total", [("reason", "shut_down")])
        workers = gauge("workers")
        depth = gauge("depth")
    }

    /// Counts tasks a worker answered with a response (handed to the kind's `use`).
    @usableFromInline
    func answered(_ n: Int) { completed.increment(by: Int64(n)) }

    /// Publishes what changed between two readings of the scheduler's counters, and the
    /// live workers and queued tasks when given (nil: unchanged).
    @usableFromInline
    func publish(from old: TaskQueueSnapshot.Counters, to new: TaskQueueSnapshot.Counters,
                 depth queued: Int?, liveWorkers: Int?) {
        func add(_ c: Counter, _ a: Int, _ b: Int) { if b > a { c.increment(by: Int64(b - a)) } }
        add(enqueued, old.enqueued, new.enqueued)
        add(failedError, old.failed, new.failed)
        add(failedTimedOut, old.timedOut, new.timedOut)
        add(failedCancelled, old.cancelled, new.cancelled)
        add(failedExpired, old.expired, new.expired)
        add(failedWorkerLost, old.lostWithWorker, new.lostWithWorker)
        add(failedMarshal, old.marshalFailures, new.marshalFailures)
        add(failedShutDown, old.shutDown, new.shutDown)
        if let liveWorkers { workers.record(liveWorkers) }
        if let queued { depth.record(queued) }
    }
}
