import Logging
import Metrics
import SpindleEventLoop
import SpindleKernel

extension TCPTransport {
    /// Options for a `TCPTransport`; the defaults suit a cluster on one network.
    public struct Configuration: Sendable {
        /// The largest frame (prefix + header + payload) sent or accepted, in bytes. A peer that
        /// announces a larger frame is disconnected with `.protocolViolation`; a local `send`
        /// of a larger envelope throws `TransportError.frameTooLarge`.
        public var maxFrameSize: Int = FrameLayout.defaultMaxFrameSize
        /// Bytes queued for a connection above which `waitUntilWritable()` suspends.
        public var highWatermark: Int = 1 << 20
        /// Bytes queued below which a suspended `waitUntilWritable()` resumes.
        public var lowWatermark: Int = 256 << 10
        /// The shared cluster secret. When set, every connection runs the Noise handshake
        /// (docs/tcp.md, "Handshake") and then carries its frames in encrypted, authenticated
        /// records; a peer without the key, with another key, or too slow is disconnected with
        /// `.authenticationFailed`. Without a key, TCP is allowed only on loopback addresses.
        public var clusterKey: ClusterKey? = nil
        /// The node id this transport announces in every handshake (`connect(to:as:)` and
        /// `listen(on:as:accept:)` override it per connection or listener). The peer then
        /// refuses envelopes from this side that claim another source. Nil announces none: the
        /// first envelope that names a source fixes the connection's source instead.
        public var nodeID: NodeID? = nil
        /// What listeners report as their `address`, for peers to dial: behind NAT or a
        /// load balancer, the public host (and port; 0 keeps the bound one). Without it a
        /// listener bound to a wildcard (`0.0.0.0`, `::`) reports the address of a
        /// non-loopback interface (or the host name), never the wildcard itself.
        public var advertisedAddress: Address? = nil
        /// How long a new connection may take to complete its handshake.
        public var handshakeTimeout: Duration = .seconds(10)
        /// Accepted connections still in their handshake, per listener, beyond which new
        /// connections are closed at once (and the refusal counted, see `refusals`).
        public var maxPendingHandshakes: Int = 256
        /// Disables Nagle's algorithm (TCP_NODELAY) on TCP connections: right for
        /// request/response traffic; bulk senders lose little since writes are coalesced.
        public var noDelay: Bool = true
        /// Envelopes received before `start(_:)` is called are buffered; above this many the
        /// connection stops reading from its socket until it is started.
        public var maxBufferedBeforeStart: Int = 4096
        /// …or above this many bytes of their payloads.
        public var maxBufferedBytesBeforeStart: Int = 16 << 20
        /// Where handshakes, rejected peers and protocol violations are logged.
        public var logger: Logger = Logger(label: "spindle.tcp")
        /// Called on the loop thread for every connection (accepted or initiated) that fails
        /// its handshake, with the peer's address and the reason the connection was closed
        /// (`.authenticationFailed` or `.protocolViolation`): a hook for metrics and audits.
        /// (The log names a refusing peer once, then at every power of ten of its count.)
        public var onHandshakeFailure: (@Sendable (_ peer: Address, _ reason: CloseReason) -> Void)? = nil
        /// Where the `spindle_tcp_*` metrics go (nil: the global `MetricsSystem`).
        public var metricsFactory: (any MetricsFactory)? = nil
        /// The clock handshake deadlines are measured on.
        public var clock: any SpindleClock = SystemClock()

        // Liveness (docs/tcp.md, "Liveness"): defaults notice a dead peer within 10 s.

        /// TCP keepalive on every TCP connection, accepted or connected: first probe after
        /// `idle` (2 s), then every `interval` (1 s), dropped after `probeCount` (3) unanswered
        /// probes; the connection then closes with `.transportError("…ETIMEDOUT…")`. nil leaves
        /// the system's setting.
        public var keepalive: StreamConfiguration.Keepalive? = StreamConfiguration.Keepalive()
        /// `TCP_USER_TIMEOUT`: sent data unacknowledged for this long drops the connection
        /// (ETIMEDOUT). nil leaves the system's setting.
        public var userTimeout: Duration? = .seconds(10)
        /// How long `connect(to:)` may wait for the socket to connect (name resolution included,
        /// the handshake not: that is `handshakeTimeout`) before it throws `.unreachable` with
        /// an ETIMEDOUT naming the address. nil waits as long as the kernel does.
        public var connectTimeout: Duration? = .seconds(5)
        /// How long closing a connection may wait for its queued bytes to reach the kernel;
        /// after it the socket is reset and the reason (the bytes left unwritten) is logged by
        /// the stream (`spindle.eventloop.stream`). nil waits forever.
        public var closeDeadline: Duration? = .seconds(10)

        public init() {}

        /// Creates a configuration, overriding the most common options.
        public init(clusterKey: ClusterKey? = nil,
                    maxFrameSize: Int = FrameLayout.defaultMaxFrameSize,
                    logger: Logger = Logger(label: "spindle.tcp")) {
            self.clusterKey = clusterKey
            self.maxFrameSize = maxFrameSize
            self.logger = logger
        }
    }
}
