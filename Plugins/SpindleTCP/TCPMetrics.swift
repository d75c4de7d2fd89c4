import Metrics

/// What a SpindleTCP transport publishes through swift-metrics (docs/operations.md):
/// connections established by role and mode, connections open, handshake refusals, bytes
/// received, records and frames refused.
final class TCPMetrics: Sendable {
    let acceptedEncrypted, acceptedPlain, connectedEncrypted, connectedPlain: Counter
    let open: Meter
    let refusals: Counter
    let bytesReceived: Counter
    let protocolViolations: Counter

    init(factory: (any MetricsFactory)?) {
        func counter(_ name: String, _ d: [(String, String)] = []) -> Counter {
            let label = "spindle_tcp_\(name)"
            if let factory { return Counter(label: label, dimensions: d, factory: factory) }
            return Counter(label: label, dimensions: d)
        }
        acceptedEncrypted = counter("connections_total", [("role", "acceptor"), ("mode", "encrypted")])
        acceptedPlain = counter("connections_total", [("role", "acceptor"), ("mode", "plain")])
        connectedEncrypted = counter("connections_total", [("role", "initiator"), ("mode", "encrypted")])
        connectedPlain = counter("connections_total", [("role", "initiator"), ("mode", "plain")])
        open = factory.map { Meter(label: "spindle_tcp_connections_open", factory: $0) }
            ?? Meter(label: "spindle_tcp_connections_open")
        refusals = counter("handshake_refusals_total")
        bytesReceived = counter("bytes_received_total")
        protocolViolations = counter("protocol_violations_total")
    }

    func established(acceptor: Bool, encrypted: Bool) {
        switch (acceptor, encrypted) {
        case (true, true): acceptedEncrypted.increment()
        case (true, false): acceptedPlain.increment()
        case (false, true): connectedEncrypted.increment()
        case (false, false): connectedPlain.increment()
        }
    }
}
