import Metrics

/// What reliable links publish through swift-metrics (docs/operations.md): connections made,
/// reconnect attempts, peers lost and restarted, messages handed back by reason.
struct LinkMetrics: Sendable {
    let connects: Counter
    let connectAttempts: Counter
    let peersLost: Counter
    let peersRestarted: Counter
    private let undeliverable: [String: Counter]

    init(role: ReliableLinkCore.Role, factory: (any MetricsFactory)?) {
        let d = [("role", role == .initiator ? "initiator" : "acceptor")]
        func counter(_ name: String, _ extra: [(String, String)] = []) -> Counter {
            let label = "spindle_link_\(name)"
            if let factory { return Counter(label: label, dimensions: d + extra, factory: factory) }
            return Counter(label: label, dimensions: d + extra)
        }
        connects = counter("connects_total")
        connectAttempts = counter("connect_attempts_total")
        peersLost = counter("peers_lost_total")
        peersRestarted = counter("peers_restarted_total")
        var u: [String: Counter] = [:]
        for reason in ["timed_out", "link_closed", "peer_unresponsive", "peer_restarted", "peer_closed"] {
            u[reason] = counter("undeliverable_total", [("reason", reason)])
        }
        undeliverable = u
    }

    func returned(_ count: Int, _ reason: UndeliverableReason) {
        let key: String
        switch reason {
        case .timedOut: key = "timed_out"
        case .linkClosed: key = "link_closed"
        case .peerUnresponsive: key = "peer_unresponsive"
        case .peerRestarted: key = "peer_restarted"
        case .peerClosed: key = "peer_closed"
        }
        undeliverable[key]?.increment(by: Int64(count))
    }

    func event(_ e: ReliableLinkEvent) {
        switch e {
        case .connected: connects.increment()
        case .peerLost: peersLost.increment()
        case .peerRestarted: peersRestarted.increment()
        case .peerClosed: break
        }
    }
}
