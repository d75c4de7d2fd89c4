import Metrics
import SpindleKernel
import Synchronization

/// The system's swift-metrics instruments, all with a `node` dimension:
/// `spindle_actor_calls_total` (remote calls started), `spindle_actor_call_failures_total`
/// (with `kind`: `peer_lost`, `timed_out`, `cancelled`, `remote_error`, …),
/// `spindle_actor_call_duration` (a timer over every answered call) and
/// `spindle_actor_executions_total` (calls received and run here). The same counts are kept
/// locally for `SpindleActorSystem.statistics`.
final class ActorSystemMetrics: Sendable {
    let calls: Counter
    let executions: Counter
    let latency: Metrics.Timer
    private let factory: (any MetricsFactory)?
    private let dimensions: [(String, String)]
    private let failures = Mutex<[String: Counter]>([:])
    private let counts = Mutex<SpindleActorSystem.Statistics>(.init())

    init(node: NodeID, factory: (any MetricsFactory)?) {
        self.factory = factory
        dimensions = [("node", node.description)]
        if let factory {
            calls = Counter(label: "spindle_actor_calls_total", dimensions: dimensions, factory: factory)
            executions = Counter(label: "spindle_actor_executions_total", dimensions: dimensions, factory: factory)
            latency = Metrics.Timer(label: "spindle_actor_call_duration", dimensions: dimensions, factory: factory)
        } else {
            calls = Counter(label: "spindle_actor_calls_total", dimensions: dimensions)
            executions = Counter(label: "spindle_actor_executions_total", dimensions: dimensions)
            latency = Metrics.Timer(label: "spindle_actor_call_duration", dimensions: dimensions)
        }
    }

    func callStarted() {
        calls.increment()
        counts.withLock { $0.callsStarted += 1 }
    }

    func callAnswered(after d: Duration) {
        latency.recordNanoseconds(max(0, d.nanosecondsClamped))
        counts.withLock { $0.callsAnswered += 1 }
    }

    func executed() {
        executions.increment()
        counts.withLock { $0.executions += 1 }
    }

    /// Counts a failed call under `kind`.
    func failed(_ kind: String) {
        let counter = failures.withLock { f -> Counter in
            if let c = f[kind] { return c }
            let d = dimensions + [("kind", kind)]
            let c = factory.map { Counter(label: "spindle_actor_call_failures_total", dimensions: d, factory: $0) }
                ?? Counter(label: "spindle_actor_call_failures_total", dimensions: d)
            f[kind] = c
            return c
        }
        counter.increment()
        counts.withLock { $0.failures[kind, default: 0] += 1 }
    }

    var snapshot: SpindleActorSystem.Statistics { counts.withLock { $0 } }
}

extension SpindleActorSystem {
    /// Counters of one system (the same as its swift-metrics instruments).
    public struct Statistics: Sendable, Equatable {
        /// Remote calls sent.
        public var callsStarted = 0
        /// Remote calls that received an answer (a value or an error the function threw).
        public var callsAnswered = 0
        /// Failed calls by kind (`ActorCallError.kind`, or `remote_error`).
        public var failures: [String: Int] = [:]
        /// Calls received and run on this node.
        public var executions = 0
    }
}
