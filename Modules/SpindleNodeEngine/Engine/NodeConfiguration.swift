import SpindleKernel

/// Options of a node. Every bounded structure has its bound here; the defaults suit a node
/// serving thousands of requests per second.
public struct NodeConfiguration: Sendable {
    /// Seeds the node's RNG and backoff jitter: the same seed replays the same choices.
    public var seed: UInt64 = 0
    /// Ops fired per poll at most, so one busy execution cannot starve timers and ingress.
    public var opBudgetPerPoll = 10_000
    /// Async ops pending at most; further async ops fail early with `cooldown`.
    public var maxPendingAsync = 10_000
    /// Deadline of an async op that names none (parameter `timeoutMs`).
    public var defaultAsyncDeadline: Duration = .seconds(30)
    /// Requests in flight per peer; a call beyond it fails at once (`peerUnavailable`).
    public var perPeerConcurrency = 4096
    /// How long a peer that failed is left alone.
    public var backoff = Backoff()
    /// Consecutive failures after which the governor marks a peer down.
    public var failuresUntilDown = 3
    /// Backoff notices sent per peer per overload episode before dropping silently.
    public var backpressureNotices = 3
    /// Executions started by inbound wire messages that may be live at once; beyond it the
    /// node is overloaded and refuses with notices, then silently.
    public var maxInboundExecutions = 4096
    public var outboundCapacity = 16_384
    /// Floor of RTT-derived wire budgets.
    public var minimumWireBudget: Duration = .milliseconds(1)
    /// Wire deadline used before any round trip has been measured.
    public var defaultWireTimeout: Duration = .seconds(5)
    /// Wire deadline = RTT budget (srtt + 4·rttvar) × this factor, when the op names none.
    public var wireBudgetFactor: Double = 4
    /// When a called peer becomes suspected (φ-accrual failure detection).
    public var suspicion = Suspicion()
    /// A peer this node calls is sent a heartbeat when nothing was heard from it for this
    /// long; its answers feed the failure detector. Only peers this node calls are watched:
    /// a client that goes quiet is never declared down.
    public var heartbeatInterval: Duration = .milliseconds(500)
    /// A watched peer not heard from for this long is declared down (whatever φ says), and
    /// its calls fail at once.
    public var livenessBound: Duration = .seconds(5)
    /// Per-peer state (failure detector history, governor status, backoff, gate, round-trip
    /// statistics) is forgotten after a peer has been neither called nor heard from for this
    /// long; its heartbeats stop.
    public var peerIdleTimeout: Duration = .seconds(300)
    /// An envelope whose HLC stamp is further ahead of this node's wall clock is refused (a
    /// peer with a badly wrong clock would drag every later stamp forward). Nil: no bound.
    public var maximumClockDrift: Duration? = .seconds(1)
    public var maxRequestsInFlight = 16_384
    public var dedupCapacity = 16_384
    public var dedupMaxAge: Duration = .seconds(60)
    public var timerCapacity = 16_384
    public var namedQueueCapacity = 1024
    public var recordCapacity = 64
    /// Inbound envelopes waiting in the ingress queue's network lane, at most.
    public var ingressCapacity = 65_536
    /// Completions waiting in the ingress queue's completions lane, at most (a flood of
    /// envelopes cannot crowd them out).
    public var completionIngressCapacity = 65_536
    /// Host starts, cancels and transport reports waiting in the control lane, at most.
    public var controlIngressCapacity = 65_536
    /// Byte cap of one completion's results.
    public var resultCap = 1 << 20
    /// Byte cap of a failure detail.
    public var failureDetailCap = 512

    public init() {}

    /// Per-peer exponential backoff: after the n-th consecutive failure a peer is left alone
    /// for `base · 2^(n-1)`, capped at `cap`, shortened by up to `jitter` at random.
    public struct Backoff: Sendable {
        public var base: Duration = .milliseconds(50)
        public var cap: Duration = .seconds(10)
        /// Fraction in [0, 1] by which a delay may be shortened at random.
        public var jitter: Double = 0.2
        public init() {}
    }

    /// φ-accrual failure detection of the peers this node calls.
    public struct Suspicion: Sendable {
        /// φ above which a peer is suspected (8: about one false suspicion in 10⁸ intervals).
        public var threshold: Double = 8
        /// Inter-arrival samples kept per peer.
        public var window: Int = 100
        /// Floor for the standard deviation, so a perfectly regular peer is not suspected at
        /// the first jitter.
        public var minimumDeviation: Duration = .milliseconds(100)
        /// Samples needed before φ is computed.
        public var minimumSamples: Int = 2
        /// Added to the mean interval: a pause this long beyond the usual rhythm is not yet
        /// suspicious (a GC pause, a busy loop turn).
        public var acceptablePause: Duration = .seconds(3)
        public init() {}
    }
}
