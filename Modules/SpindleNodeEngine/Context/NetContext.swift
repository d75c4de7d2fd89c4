/// Network state an op may use: the outbound queue, RTT tracker, failure detector and the
/// monitor of the peers this node calls, wire requests in flight and the inbound dedup window.
public struct NetContext: Sendable {
    public var outbound: OutboundQueue
    public var rtt: RttTracker
    public var suspicion: PhiAccrualDetector
    public var monitor: PeerMonitor
    public var requests: RequestTracker
    public var dedup: InboundDedup
}
