import DequeModule
import Logging
import Metrics
import SpindleEventLoop
import SpindleKernel
import Synchronization

/// A failure starting a driver.
public struct NodeDriverError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was attempted (e.g. "listen on tcp://127.0.0.1:0").
    public var operation: String
    public var reason: String
    public var description: String { "node driver: \(operation): \(reason)" }
}

/// Runs a `Node` on an `EventLoop`, talking to peers over the kernel's reliable links.
///
/// The node lives on the loop thread: ingress pushes (completions, envelopes, host starts)
/// wake the loop, which polls; after each poll the driver hands the outbound envelopes to the
/// peers' links, resumes the `call`s whose executions finished, hands the outcome to
/// `onOutcome`, and arms one loop timer for the node's next deadline (timers, deadlines,
/// heartbeats).
///
/// ```
///  link ─onDeliver─▶ ingress (network lane) ─wake─▶ loop: poll ─▶ outbound ─▶ link per peer
///  call/start ─────▶ ingress (control lane)  ─┘       │  ▲ timer at nextDeadline
///  completions ────▶ ingress (completions lane) ─┘    └─▶ finished ─▶ resume call
/// ```
///
/// Links: envelopes to a peer whose address the node knows go over a `ReliableLink` this
/// driver opens to it (reconnecting with backoff, exactly once per session); to a peer that
/// only connected to this driver's listener, over that accepted link (learned from the first
/// envelope's source). Every link carries envelopes of this node only. Connect failures are
/// reported to the node (`peerUnreachable`), and envelopes a link hands back, or that have no
/// route, fail their calls at once (`undeliverable`).
public final class NodeDriver: @unchecked Sendable {
    // @unchecked Sendable: `node` and every `var` below are touched only on `loop`'s thread
    // (each entry point hops there with `loop.execute`); the rest is immutable and Sendable
    // or guarded by a Mutex.

    public struct Configuration: Sendable {
        /// Where to accept connections from peers (nil: only dial out).
        public var listenAddress: Address?
        /// Clock for `poll(now:)` and the links (the node's deadlines are on this timeline).
        public var clock: any SpindleClock = SystemClock()
        /// Options of the reliable links to and from peers (their clock is `clock`).
        public var link = ReliableLink.Configuration()
        /// How often links still connecting are checked for failed attempts (reported to the
        /// node) and idle links for closing.
        public var linkCheckInterval: Duration = .milliseconds(100)
        /// Called on the loop thread after every poll that did something.
        public var onOutcome: (@Sendable (PollOutcome) -> Void)?
        public var logger = Logger(label: "spindle.node.driver")
        /// Where the `spindle_engine_*` counters go (nil: the global `MetricsSystem`).
        public var metricsFactory: (any MetricsFactory)?

        public init(listenAddress: Address? = nil) {
            self.listenAddress = listenAddress
        }
    }

    public let loop: EventLoop
    public let transport: any Transport
    public let configuration: Configuration
    /// The node's ingress: thread-safe, for completions and host requests.
    public let ingress: Ingress
    /// The node's id.
    public let nodeID: NodeID
    let node: Node
    let metrics: NodeDriverMetrics
    let taskExecutor: LoopTaskExecutor
    let calls = Mutex(CallRegistry())
    /// Calls waiting, so a poll with none skips the registry's lock.
    let callsWaiting = Atomic<Int>(0)
    private let listenerBox = Mutex<ReliableListener?>(nil)
    /// Links peers opened to this driver, by the peer's node id (from the first envelope).
    private let acceptedLinks = Mutex<[NodeID: ReliableLink]>([:])
    private let linkConfiguration: ReliableLink.Configuration

    // Loop-thread state.
    private var links: [NodeID: OutboundLink] = [:]
    private var timer: LoopTimer?
    private var timerDeadline: MonotonicInstant?
    private var checkTimer: LoopTimer?
    private var stopped = false
    /// Set (loop thread) while a call made on the loop pushes its start: the waker leaves the
    /// poll to it.
    var pollsInline = false
    /// Whether a poll is running (loop thread), so a poll is never entered twice.
    private var polling = false

    /// A link this driver opened, with what it last reported of it.
    private struct OutboundLink {
        let link: ReliableLink
        var lastUsed: MonotonicInstant
        var reportedAttempts = 0
        var reportedError: String?
    }

    private init(node: sending Node, loop: EventLoop, transport: any Transport, configuration: Configuration) {
        self.node = node
        self.loop = loop
        self.transport = transport
        self.configuration = configuration
        ingress = node.ingress
        nodeID = node.id
        metrics = NodeDriverMetrics(node: node.id, factory: configuration.metricsFactory)
        taskExecutor = LoopTaskExecutor(loop: loop)
        var link = configuration.link
        link.clock = configuration.clock
        linkConfiguration = link
    }

    /// Binds `node` to `loop` and `transport`, listening (for reliable links) on
    /// `configuration.listenAddress`.
    public static func start(node: sending Node, on loop: EventLoop, transport: any Transport,
                             configuration: Configuration = .init()) async throws(NodeDriverError) -> NodeDriver {
        let driver = NodeDriver(node: node, loop: loop, transport: transport, configuration: configuration)
        if let address = configuration.listenAddress {
            do {
                let listener = try await ReliableListener.listen(over: transport, on: address,
                                                                 configuration: driver.linkConfiguration) { [weak driver] link in
                    driver?.acceptedHandler(link) ?? ReliableLink.Handler(onDeliver: { _ in }, onUndeliverable: { _, _ in })
                }
                driver.listenerBox.withLock { $0 = listener }
            } catch {
                throw NodeDriverError(operation: "listen on \(address)", reason: error.description)
            }
        }
        driver.ingress.setWaker { [weak driver] in
            guard let driver else { return }
            // On the loop thread (a link delivering, a call made from a task on the loop) the
            // node polls at once, unless a poll is running (it takes the event when it ends)
            // or a call will poll right after its push (`pollsInline`): no trip through the
            // loop's queue, which would cost a wake-up of the loop by itself.
            if driver.loop.inEventLoop {
                if !driver.pollsInline { driver.pollNowOrSoon() }
                return
            }
            driver.loop.execute { driver.runPoll() }
        }
        loop.execute { driver.runPoll() }
        return driver
    }

    /// The address the listener bound (port 0 resolved), if listening.
    public var listenAddress: Address? { listenerBox.withLock { $0?.address } }

    /// The driver's counters (also published as `spindle_engine_*` metrics).
    public var statistics: Statistics { metrics.snapshot }

    /// Starts an execution at `site` (from any thread) and returns its id; its result is in
    /// the outcome that finishes it (`onOutcome`). To await the result, use `call`.
    /// - Parameter timeout: the execution's async ops must finish within it.
    /// - Throws: `IngressError.full` when the ingress control lane is full.
    @discardableResult
    public func start(site: String, value: Value, timeout: Duration? = nil) throws(IngressError) -> ExecID {
        let id = ingress.reserveExecution()
        try ingress.push(.startReserved(id, site: site, value: value, timeout: timeout))
        return id
    }

    /// Cancels execution `id` (from any thread): its pending ops fail with `cancelled`.
    public func cancel(_ id: ExecID) throws(IngressError) {
        try ingress.push(.cancel(id))
    }

    /// Runs `body` with the node on the loop thread (to read state or add peers) and returns
    /// its result.
    public func withNode<T: Sendable>(_ body: @escaping @Sendable (Node) throws -> T) async throws -> T {
        try await loop.submit { [self] in
            let result = try body(node)
            runPoll()
            return result
        }
    }

    /// Stops polling, fails the calls still waiting with `.shutDown`, and shuts the listener
    /// and every link down. The loop and the transport belong to the caller and stay up.
    public func shutdown() async {
        ingress.setWaker(nil)
        let listener = listenerBox.withLock { l -> ReliableListener? in
            defer { l = nil }
            return l
        }
        let outbound: [ReliableLink] = (try? await loop.submit { [self] in
            stopped = true
            timer?.cancel()
            timer = nil
            checkTimer?.cancel()
            checkTimer = nil
            let all = links.values.map(\.link)
            links.removeAll()
            return all
        }) ?? []
        failAllCalls(.shutDown)
        await listener?.shutdown()
        for link in outbound { await link.shutdown() }
        let accepted = acceptedLinks.withLock { a -> [ReliableLink] in
            defer { a.removeAll() }
            return Array(a.values)
        }
        for link in accepted { await link.shutdown() }
    }

    // MARK: Loop thread

    /// Polls now, or (from inside a poll) once the current poll is done.
    func pollNowOrSoon() {
        if polling { loop.execute { [self] in runPoll() } } else { runPoll() }
    }

    func runPoll() {
        guard !stopped, !polling else { return }
        polling = true
        defer { polling = false }
        let outcome = node.poll(now: configuration.clock.now())
        if !outcome.outbound.isEmpty { route(outcome.outbound) }
        if !outcome.finished.isEmpty || !outcome.refusedStarts.isEmpty { resumeCalls(outcome) }
        if outcome.status != .idle {
            metrics.record(outcome)
            configuration.onOutcome?(outcome)
        }
        if outcome.status == .budgetExhausted {
            // Let other loop work run between budget slices.
            loop.execute { [self] in runPoll() }
            return
        }
        arm(outcome.nextDeadline)
    }

    private func arm(_ deadline: MonotonicInstant?) {
        guard deadline != timerDeadline else { return }
        // A timer already due earlier stays: it polls, and that poll arms the next one. Moving
        // it later on every call (each new request's deadline) would cost a libuv timer each.
        if let armed = timerDeadline, let deadline, armed < deadline, timer != nil { return }
        timer?.cancel()
        timer = nil
        timerDeadline = deadline
        guard let deadline else { return }
        let delay = max(deadline - configuration.clock.now(), .zero)
        timer = loop.scheduleTimer(after: delay) { [self] in
            timerDeadline = nil
            timer = nil
            runPoll()
        }
    }

    /// Hands envelopes to their peers' links, in order.
    private func route(_ outbound: [Envelope]) {
        var heartbeats = 0, sent = 0
        var undeliverable: [NodeID: [Envelope]] = [:]
        for env in outbound {
            guard let dest = env.destination, let link = link(to: dest) else {
                metrics.unroutable.add(1)
                undeliverable[env.destination ?? nodeID, default: []].append(env)
                continue
            }
            do {
                try link.send(env)
                sent += 1
                if env.kind == WireKind.heartbeat.rawValue { heartbeats += 1 }
            } catch {
                configuration.logger.debug("link to \(dest) refused an envelope: \(error)")
                metrics.undeliverable.add(1)
                undeliverable[dest, default: []].append(env)
            }
        }
        metrics.envelopesSent.add(sent)
        metrics.heartbeatsSent.add(heartbeats)
        for (peer, envs) in undeliverable {
            let reason = links[peer] == nil && node.context.peers.addresses.lookup(peer)?.first == nil
                ? "no route to \(peer): no address known and no connection from it"
                : "the link to \(peer) refused it"
            report(.undeliverable(envs, reason: reason))
        }
    }

    /// The link to `peer`: this driver's own when the peer's address is known (opened on
    /// first use), else the one the peer opened to this driver, else nil.
    private func link(to peer: NodeID) -> ReliableLink? {
        let now = configuration.clock.now()
        if links[peer] != nil {
            if !links[peer]!.link.isClosed {
                links[peer]!.lastUsed = now
                return links[peer]!.link
            }
            links[peer] = nil
        }
        if let address = node.context.peers.addresses.lookup(peer)?.first {
            let link = ReliableLink.connect(over: transport, to: address, configuration: linkConfiguration,
                                            handler: linkHandler(peer: peer))
            links[peer] = OutboundLink(link: link, lastUsed: now)
            armLinkCheck()
            return link
        }
        return acceptedLinks.withLock { accepted -> ReliableLink? in
            guard let link = accepted[peer] else { return nil }
            if link.isClosed {
                accepted[peer] = nil
                return nil
            }
            return link
        }
    }

    /// What this driver's link to `peer` delivers goes to the node; what it hands back fails
    /// the calls it carried.
    private func linkHandler(peer: NodeID) -> ReliableLink.Handler {
        let ingress = self.ingress
        let metrics = self.metrics
        return ReliableLink.Handler(
            onDeliver: { env in NodeDriver.deliver(env, to: ingress, metrics) },
            onUndeliverable: { envs, why in
                metrics.undeliverable.add(envs.count)
                NodeDriver.report(.undeliverable(envs, reason: "link to \(peer): \(why)"), to: ingress, metrics)
            })
    }

    /// The handler of a link a peer opened: learns the peer from the first envelope's source.
    private func acceptedHandler(_ link: ReliableLink) -> ReliableLink.Handler {
        let ingress = self.ingress
        let metrics = self.metrics
        let learned = LearnedFlag()
        return ReliableLink.Handler(
            onDeliver: { [weak self] env in
                if !learned.value.load(ordering: .acquiring), let source = env.source, let self {
                    // A link carries one peer's envelopes: the first source it shows is the way
                    // back to that peer. Recorded before the delivery, so the poll that answers
                    // it finds the link.
                    self.acceptedLinks.withLock { $0[source] = link }
                    learned.value.store(true, ordering: .releasing)
                }
                NodeDriver.deliver(env, to: ingress, metrics)
            },
            onUndeliverable: { envs, why in
                metrics.undeliverable.add(envs.count)
                NodeDriver.report(.undeliverable(envs, reason: "accepted link \(link.session): \(why)"), to: ingress, metrics)
            })
    }

    /// Hands an envelope a link delivered to the node. Its sequence number is the link's (one
    /// numbering per session, not per sender): the node's dedup window must not see it, and
    /// the link already delivers each message exactly once.
    private static func deliver(_ env: Envelope, to ingress: Ingress, _ metrics: NodeDriverMetrics) {
        var env = env
        env.sequence = 0
        metrics.envelopesReceived.add(1)
        do { try ingress.push(.envelope(env)) } catch {
            // Counted on the bus as ingressRejected (network lane); a request's sender sees
            // its call time out.
            metrics.ingressRejected.add(1)
        }
    }

    private static func report(_ event: IngressEvent, to ingress: Ingress, _ metrics: NodeDriverMetrics) {
        do { try ingress.push(event) } catch { metrics.ingressRejected.add(1) }
    }

    private func report(_ event: IngressEvent) { NodeDriver.report(event, to: ingress, metrics) }

    /// Checks this driver's links every `linkCheckInterval` while any exists: a link still
    /// connecting after a failed attempt is reported to the node (once per attempt); a link
    /// neither used nor holding anything for the node's `peerIdleTimeout` is closed.
    private func armLinkCheck() {
        guard checkTimer == nil, !stopped else { return }
        checkTimer = loop.scheduleTimer(after: configuration.linkCheckInterval) { [self] in
            checkTimer = nil
            checkLinks()
            if !links.isEmpty { armLinkCheck() }
        }
    }

    private func checkLinks() {
        guard !stopped else { return }
        let now = configuration.clock.now()
        let idle = node.configuration.peerIdleTimeout
        for peer in links.keys.sorted() {
            guard var entry = links[peer] else { continue }
            if entry.link.isClosed {
                links[peer] = nil
                continue
            }
            if now - entry.lastUsed >= idle && entry.link.queuedCount == 0 {
                entry.link.close()
                links[peer] = nil
                continue
            }
            guard !entry.link.isEstablished else {
                entry.reportedError = nil
                links[peer] = entry
                continue
            }
            let stats = entry.link.statistics
            guard let error = stats.lastError,
                  stats.reconnects != entry.reportedAttempts || error != entry.reportedError else { continue }
            entry.reportedAttempts = stats.reconnects
            entry.reportedError = error
            links[peer] = entry
            metrics.connectFailures.add(1)
            configuration.logger.debug("cannot connect to \(peer) at \(entry.link.remoteAddress.map { "\($0)" } ?? "?"): \(error)")
            report(.peerUnreachable(peer, reason: "connect to \(entry.link.remoteAddress.map { "\($0)" } ?? "?"): \(error)"))
        }
    }
}

/// Whether a link's handler has recorded its peer yet.
private final class LearnedFlag: Sendable {
    let value = Atomic<Bool>(false)
}
