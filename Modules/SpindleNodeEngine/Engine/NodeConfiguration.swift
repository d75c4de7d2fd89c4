import Logging
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
    /// Requests in flight per peer.
    public var perPeerConcurrency = 256
    public var backoff = BackoffTable.Configuration()
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
    public var suspicion = PhiAccrualDetector.Configuration()
    public var maxRequestsInFlight = 16_384
    public var dedupCapacity = 16_384
    public var dedupMaxAge: Duration = .seconds(60)
    public var timerCapacity = 16_384
    public var namedQueueCapacity = 1024
    public var recordCapacity = 64
    public var ingressCapacity = 65_536
    /// Byte cap of one completion's results.
    public var resultCap = 1 << 20
    /// Byte cap of a failure detail.
    public var failureDetailCap = 512
    public var logger = Logger(label: "spindle.node")

    public init() {}
}
