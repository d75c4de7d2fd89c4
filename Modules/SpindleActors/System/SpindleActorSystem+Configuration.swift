import Logging
import Metrics
import SpindleKernel

extension SpindleActorSystem {
    /// Options of an actor system.
    public struct Configuration: Sendable {
        /// This system's node id (a fresh one by default). Over SpindleTCP with a
        /// `TCPTransport.Configuration.nodeID`, use the same id: a connection refuses envelopes
        /// whose source is not the node it announced.
        public var nodeID: NodeID
        /// Where to accept links from other nodes; nil to make calls only (this node's actors
        /// are then reachable only over links it opened itself). Port 0 picks a free port;
        /// `SpindleActorSystem.address` is the address actually bound.
        public var listenAddress: Address?
        /// The deadline of a call made outside any `withDeadline`.
        public var callTimeout: Duration
        /// The clock deadlines and the links' timers are measured on.
        public var clock: any SpindleClock
        /// When false nothing ticks by itself: deadlines are checked and links ticked only by
        /// `tick()` (deterministic tests on a `ManualClock`).
        public var automaticTicks: Bool
        /// Options of the reliable links that carry the calls: the liveness bound
        /// (`link.core.livenessBound`, 5 s by default) is how long a silent peer has before
        /// its calls fail with `.peerLost`. Its clock and `automaticTicks` are replaced by the
        /// system's.
        public var link: ReliableLink.Configuration
        /// Consecutive failed connects (refused, unreachable) after which a peer is declared
        /// lost and its link closed; each retry waits the link's backoff (10 ms, doubling).
        public var connectAttemptsBeforeLost: Int
        /// Where received calls run: nil for the global concurrent executor; an event loop's
        /// task executor to run them, and the actors they call, on the loop thread (see
        /// docs/actors.md, "Performance").
        public var executor: (any TaskExecutor)?
        /// When true, a received call starts on the thread that delivers it and runs there
        /// until its first suspension (`Task.immediateDetached`), then continues on
        /// `executor`. Set it when `executor` is the event loop the transport delivers on: the
        /// call would run on that thread anyway, and this saves a trip through the loop's
        /// queue (a synchronous function then answers within the read that delivered it).
        /// Leave it off otherwise: a long synchronous function would hold the transport's
        /// thread.
        public var startsCallsImmediately: Bool
        public var logger: Logger
        /// Where counters and the latency timer go (`spindle_actor_*`); nil for the global
        /// `MetricsSystem`.
        public var metricsFactory: (any MetricsFactory)?

        public init(nodeID: NodeID = .generate(), listenAddress: Address? = nil,
                    callTimeout: Duration = .seconds(30), clock: any SpindleClock = SystemClock(),
                    automaticTicks: Bool = true, link: ReliableLink.Configuration = .init(),
                    connectAttemptsBeforeLost: Int = 3, executor: (any TaskExecutor)? = nil,
                    startsCallsImmediately: Bool = false, logger: Logger = Logger(label: "spindle.actors"),
                    metricsFactory: (any MetricsFactory)? = nil) {
            self.nodeID = nodeID
            self.listenAddress = listenAddress
            self.callTimeout = callTimeout
            self.clock = clock
            self.automaticTicks = automaticTicks
            self.link = link
            self.connectAttemptsBeforeLost = max(1, connectAttemptsBeforeLost)
            self.executor = executor
            self.startsCallsImmediately = startsCallsImmediately
            self.logger = logger
            self.metricsFactory = metricsFactory
        }

        /// The link configuration with the system's clock and ticking.
        var effectiveLink: ReliableLink.Configuration {
            var l = link
            l.clock = clock
            l.automaticTicks = automaticTicks
            return l
        }
    }
}
