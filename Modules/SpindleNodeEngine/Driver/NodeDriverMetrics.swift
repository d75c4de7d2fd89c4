import Metrics
import SpindleKernel
import Synchronization

/// The driver's counters, published through swift-metrics as `spindle_engine_*` (with a
/// `node` dimension) and readable as a snapshot (`NodeDriver.statistics`).
final class NodeDriverMetrics: Sendable {
    /// One counter: a swift-metrics `Counter` and the same count kept locally.
    final class Count: Sendable {
        let counter: Counter
        let value = Atomic<Int64>(0)

        init(_ name: String, _ dimensions: [(String, String)], _ factory: (any MetricsFactory)?) {
            if let factory {
                counter = Counter(label: "spindle_engine_\(name)", dimensions: dimensions, factory: factory)
            } else {
                counter = Counter(label: "spindle_engine_\(name)", dimensions: dimensions)
            }
        }

        @inline(__always)
        func add(_ n: Int) {
            guard n > 0 else { return }
            value.add(Int64(n), ordering: .relaxed)
            counter.increment(by: Int64(n))
        }
    }

    let callsStarted, callsFailed, opsFired, executionsFinished, opFailures: Count
    let envelopesSent, envelopesReceived, heartbeatsSent, unroutable, undeliverable: Count
    let connectFailures, peersDown, backoffNoticesReceived, ingressRejected: Count

    init(node: NodeID, factory: (any MetricsFactory)?) {
        let d = [("node", node.description)]
        callsStarted = Count("calls_total", d, factory)
        callsFailed = Count("call_failures_total", d, factory)
        opsFired = Count("ops_fired_total", d, factory)
        executionsFinished = Count("executions_finished_total", d, factory)
        opFailures = Count("op_failures_total", d, factory)
        envelopesSent = Count("envelopes_sent_total", d, factory)
        envelopesReceived = Count("envelopes_received_total", d, factory)
        heartbeatsSent = Count("heartbeats_sent_total", d, factory)
        unroutable = Count("unroutable_total", d, factory)
        undeliverable = Count("undeliverable_total", d, factory)
        connectFailures = Count("connect_failures_total", d, factory)
        peersDown = Count("peers_down_total", d, factory)
        backoffNoticesReceived = Count("backoff_notices_received_total", d, factory)
        ingressRejected = Count("ingress_rejected_total", d, factory)
    }

    /// Counts what a poll reports.
    func record(_ outcome: PollOutcome) {
        opsFired.add(outcome.opsFired)
        executionsFinished.add(outcome.finished.count)
        guard !outcome.events.isEmpty else { return }
        var failures = 0, down = 0, notices = 0
        for r in outcome.events {
            switch r.event {
            case .opFailed: failures += 1
            case .peerDown: down += 1
            case .backoffNoticeReceived: notices += 1
            default: break
            }
        }
        opFailures.add(failures)
        peersDown.add(down)
        backoffNoticesReceived.add(notices)
    }

    var snapshot: NodeDriver.Statistics {
        func v(_ c: Count) -> Int64 { c.value.load(ordering: .relaxed) }
        return NodeDriver.Statistics(
            callsStarted: v(callsStarted), callsFailed: v(callsFailed), opsFired: v(opsFired),
            executionsFinished: v(executionsFinished), opFailures: v(opFailures), envelopesSent: v(envelopesSent),
            envelopesReceived: v(envelopesReceived), heartbeatsSent: v(heartbeatsSent), unroutable: v(unroutable),
            undeliverable: v(undeliverable), connectFailures: v(connectFailures), peersDown: v(peersDown),
            backoffNoticesReceived: v(backoffNoticesReceived), ingressRejected: v(ingressRejected))
    }
}

extension NodeDriver {
    /// The driver's counters since it started. Each is also published through swift-metrics
    /// as `spindle_engine_<name>` with the dimension `node`: `calls_total`,
    /// `call_failures_total`, `ops_fired_total`, `executions_finished_total`,
    /// `op_failures_total`, `envelopes_sent_total`, `envelopes_received_total`,
    /// `heartbeats_sent_total`, `unroutable_total`, `undeliverable_total`,
    /// `connect_failures_total`, `peers_down_total`, `backoff_notices_received_total`,
    /// `ingress_rejected_total`.
    public struct Statistics: Sendable, Equatable {
        /// `call`s started, and those that threw.
        public var callsStarted, callsFailed: Int64
        public var opsFired, executionsFinished, opFailures: Int64
        /// Envelopes handed to links, and received from them.
        public var envelopesSent, envelopesReceived: Int64
        public var heartbeatsSent: Int64
        /// Envelopes for peers with no address and no connection.
        public var unroutable: Int64
        /// Envelopes links handed back (delivery timeout, link closed) or refused.
        public var undeliverable: Int64
        /// Failed connect attempts reported to the node.
        public var connectFailures: Int64
        public var peersDown: Int64
        public var backoffNoticesReceived: Int64
        /// Pushes the ingress queue refused (a full lane).
        public var ingressRejected: Int64
    }
}
