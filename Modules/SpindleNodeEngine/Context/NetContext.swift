/// Network state an op may use: the outbound queue, RTT tracker, failure detector and the
/// monitor of the peers this node calls, wire requests in flight and the inbound dedup window.
struct NetContext: Sendable {
    var outbound: OutboundQueue
    var rtt: RttTracker
    var suspicion: PhiAccrualDetector
    var monitor: PeerMonitor
    var requests: RequestTracker
    var dedup: InboundDedup
}
