import Metrics
import Synchronization

/// The host mesh's counters and gauges, published through swift-metrics as `spindle_mesh_*`
/// and kept locally for `statistics`.
final class MeshMetrics: Sendable {
    /// One counter: a swift-metrics `Counter` and the same count kept locally.
    final class Count: Sendable {
        let counter: Counter
        let value = Atomic<Int64>(0)

        init(_ name: String, _ dimensions: [(String, String)], _ factory: (any MetricsFactory)?) {
            let label = "spindle_mesh_\(name)"
            if let factory {
                counter = Counter(label: label, dimensions: dimensions, factory: factory)
            } else {
                counter = Counter(label: label, dimensions: dimensions)
            }
        }

        func add(_ n: Int = 1) {
            guard n > 0 else { return }
            value.add(Int64(n), ordering: .relaxed)
            counter.increment(by: Int64(n))
        }

        var current: Int64 { value.load(ordering: .relaxed) }
    }

    /// One gauge, set to the latest value and kept locally.
    final class Level: Sendable {
        let gauge: Gauge
        let value = Atomic<Int64>(0)

        init(_ name: String, _ dimensions: [(String, String)], _ factory: (any MetricsFactory)?) {
            let label = "spindle_mesh_\(name)"
            if let factory {
                gauge = Gauge(label: label, dimensions: dimensions, factory: factory)
            } else {
                gauge = Gauge(label: label, dimensions: dimensions)
            }
        }

        func set(_ v: Int) {
            value.store(Int64(v), ordering: .relaxed)
            gauge.record(Int64(v))
        }

        var current: Int64 { value.load(ordering: .relaxed) }
    }

    let dimensions: [(String, String)]
    let factory: (any MetricsFactory)?
    let procsStarted, procsStopped, procsFailed, procsRestarted: Count
    let configPushes, hostsLost, hostsBack, lateReplies, logLinesDropped: Count
    let procsLive, hostsUp: Level
    private let refusals = Mutex<[String: Count]>([:])

    init(dimensions: [(String, String)], factory: (any MetricsFactory)?) {
        self.dimensions = dimensions
        self.factory = factory
        procsStarted = Count("procs_started_total", dimensions, factory)
        procsStopped = Count("procs_stopped_total", dimensions, factory)
        procsFailed = Count("procs_failed_total", dimensions, factory)
        procsRestarted = Count("procs_restarted_total", dimensions, factory)
        configPushes = Count("config_pushes_total", dimensions, factory)
        hostsLost = Count("hosts_lost_total", dimensions, factory)
        hostsBack = Count("hosts_back_total", dimensions, factory)
        lateReplies = Count("late_replies_total", dimensions, factory)
        logLinesDropped = Count("log_lines_dropped_total", dimensions, factory)
        procsLive = Level("procs_live", dimensions, factory)
        hostsUp = Level("hosts_up", dimensions, factory)
    }

    /// Counts a refusal under `spindle_mesh_refusals_total{reason=…}`.
    func refused(_ reason: String) {
        let c = refusals.withLock { r -> Count in
            if let c = r[reason] { return c }
            let c = Count("refusals_total", dimensions + [("reason", reason)], factory)
            r[reason] = c
            return c
        }
        c.add()
    }

    var refusalCounts: [String: Int64] { refusals.withLock { $0.mapValues(\.current) } }
}

/// Counters of a host agent or a host mesh client since it started. Each is also published
/// through swift-metrics as `spindle_mesh_<name>` (dimension `role`: `agent` or `client`,
/// and `agent` or `mesh`): `procs_started_total`, `procs_stopped_total`,
/// `procs_failed_total`, `procs_restarted_total`, `config_pushes_total`, `hosts_lost_total`,
/// `hosts_back_total`, `late_replies_total`, `log_lines_dropped_total`,
/// `refusals_total{reason}`, and the gauges `procs_live` and `hosts_up`.
public struct MeshStatistics: Sendable, Equatable {
    /// Agent: procs started (restarts included), ended (stopped or killed), failed (ended by
    /// a failure they were not asked for, or could not start), restarted.
    public var procsStarted, procsStopped, procsFailed, procsRestarted: Int64
    /// Agent: snapshots installed. Client: snapshots pushed.
    public var configPushes: Int64
    /// Client: hosts declared lost, and hosts that came back.
    public var hostsLost, hostsBack: Int64
    /// Client: replies that came after their request had failed (dropped).
    public var lateReplies: Int64
    /// Output lines dropped because their receiver was not keeping up.
    public var logLinesDropped: Int64
    /// Agent: live procs. Client: hosts answering.
    public var procsLive, hostsUp: Int64
    /// Agent: refusals by reason (`program_not_allowed`, `limit_procs_per_client`, …).
    public var refusals: [String: Int64]
}

extension MeshMetrics {
    var snapshot: MeshStatistics {
        MeshStatistics(procsStarted: procsStarted.current, procsStopped: procsStopped.current,
                       procsFailed: procsFailed.current, procsRestarted: procsRestarted.current,
                       configPushes: configPushes.current, hostsLost: hostsLost.current, hostsBack: hostsBack.current,
                       lateReplies: lateReplies.current, logLinesDropped: logLinesDropped.current,
                       procsLive: procsLive.current, hostsUp: hostsUp.current, refusals: refusalCounts)
    }
}
