import DequeModule
import Logging
import Metrics
import Synchronization

/// Exactly-once, in-order messaging to one peer over any `Transport`, surviving reconnects.
///
/// The thin shell around `ReliableLinkCore`: it feeds the core events (sends, arriving
/// envelopes, connection changes, ticks) and performs its actions. Actions are performed in
/// the order the core produced them by one flusher at a time, outside the link's lock, so
/// `onDeliver` calls never overlap, arrive in sequence order, and a handler may call `send`.
///
/// Create the initiating end with `ReliableLink.connect(over:to:…)` and the accepting end
/// with `ReliableListener`. The link owns the `sequence` field and the
/// `EnvelopeFlags.sequenced` flag of the envelopes it carries; everything else arrives as sent.
public final class ReliableLink: Sendable {
    /// What the application receives from a link.
    public struct Handler: Sendable {
        /// Each message, exactly once per session, in send order.
        public var onDeliver: @Sendable (Envelope) -> Void
        /// Messages of *this* side that will not (or may not) be delivered, with the reason.
        public var onUndeliverable: @Sendable ([Envelope], UndeliverableReason) -> Void
        /// How the peer is doing: connected, lost (liveness), restarted, closed.
        public var onEvent: (@Sendable (ReliableLinkEvent) -> Void)?

        public init(onDeliver: @escaping @Sendable (Envelope) -> Void,
                    onUndeliverable: @escaping @Sendable ([Envelope], UndeliverableReason) -> Void,
                    onEvent: (@Sendable (ReliableLinkEvent) -> Void)? = nil) {
            self.onDeliver = onDeliver
            self.onUndeliverable = onUndeliverable
            self.onEvent = onEvent
        }
    }

    /// Options of a link (protocol options are in `core`).
    public struct Configuration: Sendable {
        public var core: ReliableLinkCore.Configuration
        /// The clock timeouts and backoff are measured on.
        public var clock: any SpindleClock
        /// The finest timer resolution: a link is never woken sooner than this after its last
        /// tick. (Every link of the process shares one timer, which sleeps until the earliest
        /// link deadline: the next ack, heartbeat, liveness check, reconnect or timeout.)
        public var tickInterval: Duration
        /// When false, nothing wakes this link: call `tick()` yourself. (On a `ManualClock` with
        /// this on, the link sleeps on that clock, so advancing the clock ticks it.)
        public var automaticTicks: Bool
        /// Largest frame the link sends; larger messages are refused by `send`. Once connected,
        /// the connection's own `maximumFrameSize` lowers it when smaller.
        public var maximumFrameSize: Int
        /// (Accepting side) a session with no connection and nothing unacknowledged for this
        /// long is forgotten: its link is closed and removed from the listener. If its
        /// initiator comes back later, `accept` is called again for a fresh link.
        public var idleSessionTimeout: Duration
        /// Above this many unacknowledged messages the link is not writable:
        /// `waitUntilWritable` suspends until acknowledgements bring it down to
        /// `writableLowWatermark`. (`send` itself refuses only above `core.maximumQueued`.)
        public var writableHighWatermark: Int
        public var writableLowWatermark: Int
        /// (Accepting side) a connection that has not sent its `hello` this long after being
        /// accepted is closed.
        public var helloTimeout: Duration
        /// (Accepting side) connections accepted and not yet routed by their `hello`, beyond
        /// which new connections are closed at once.
        public var maximumPendingConnections: Int
        /// (Accepting side) sessions a listener keeps at once; a `hello` for a new session
        /// beyond it is refused.
        public var maximumSessions: Int
        /// Where refused connections are logged (once per peer, then at powers of ten).
        public var logger: Logger
        /// Where the `spindle_link_*` metrics go (nil: the global `MetricsSystem`).
        public var metricsFactory: (any MetricsFactory)? = nil

        public init(core: ReliableLinkCore.Configuration = .init(), clock: any SpindleClock = SystemClock(),
                    tickInterval: Duration = .milliseconds(5), automaticTicks: Bool = true,
                    maximumFrameSize: Int = FrameLayout.defaultMaxFrameSize,
                    idleSessionTimeout: Duration = .seconds(120),
                    writableHighWatermark: Int = 65_536, writableLowWatermark: Int = 32_768,
                    helloTimeout: Duration = .seconds(10), maximumPendingConnections: Int = 256,
                    maximumSessions: Int = 65_536, logger: Logger = Logger(label: "spindle.reliable")) {
            self.helloTimeout = helloTimeout
            self.maximumPendingConnections = max(1, maximumPendingConnections)
            self.maximumSessions = max(1, maximumSessions)
            self.logger = logger
            self.core = core
            self.clock = clock
            self.tickInterval = tickInterval
            self.automaticTicks = automaticTicks
            self.maximumFrameSize = maximumFrameSize
            self.idleSessionTimeout = idleSessionTimeout
            self.writableHighWatermark = max(1, writableHighWatermark)
            self.writableLowWatermark = min(max(0, writableLowWatermark), self.writableHighWatermark - 1)
        }
    }

    /// Counters of one link.
    public struct Statistics: Sendable, Equatable {
        public var queued: Int
        public var deliveredUpTo: UInt64
        public var duplicatesDropped: Int
        public var outOfOrderDropped: Int
        public var retransmitted: Int
        public var reconnects: Int
        /// The last connection failure seen.
        public var lastError: String?
    }

    private struct State {
        var core: ReliableLinkCore
        var connection: (any TransportConnection)?
        /// `connection` may be sent to while the lock is held (its sends never run handlers).
        var sendsUnderLock = false
        /// `connection` pulls what it writes (and sends under the lock): sends only queue their
        /// frames in the core, and one pull per loop turn hands them over (`pull`).
        var pulls = false
        /// A pull has been requested from `connection` and has not run yet.
        var pullRequested = false
        var epoch: UInt64 = 0
        /// Actions not yet performed, in order. Transmits in it are for `connection`: when the
        /// connection changes they are purged (they could only fail on the old one, and the
        /// core retransmits after the next handshake).
        var work: [ReliableLinkCore.Action] = []
        /// An empty buffer with capacity, swapped with `work` by the flusher.
        var spare: [ReliableLinkCore.Action] = []
        var flushing = false
        var tasks: [UInt64: Task<Void, Never>] = [:]
        var nextTask: UInt64 = 0
        var shutDown = false
        /// Callers of `shutdown` waiting for the core to close.
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        /// Numbers connect attempts so a late result of an abandoned one is discarded.
        var connectAttempt: UInt64 = 0
        /// Callers of `waitUntilWritable` waiting for acknowledgements.
        var writableWaiters: [CheckedContinuation<ReliableLinkError?, Never>] = []
    }

    public let session: SessionID
    public let role: ReliableLinkCore.Role
    /// The address the initiator connects to (nil on the accepting side).
    public let remoteAddress: Address?
    public let configuration: Configuration
    // Hot-path copies of configuration fields (reading through the struct would copy it).
    private let clock: any SpindleClock
    private let maximumFrameSize: Int
    /// `maximumFrameSize`, lowered to the last attached connection's limit when that is smaller.
    private let frameLimit: Atomic<Int>
    /// The clock's time at the last tick or control event. Sends and data arrivals are
    /// timestamped with it instead of reading the clock per message, so delivery timeouts and
    /// ack delays are accurate to one `tickInterval`.
    private let coarseNow: Atomic<UInt64>
    private let transport: any Transport
    private let state: Mutex<State>
    /// The application's handler, read by the flusher when it has something to hand over.
    private let handlerSlot: HandlerSlot
    /// Id at the shared `LinkTimer` (nil with `automaticTicks` off).
    private let timerID = Mutex<UInt64?>(nil)
    /// The shared timer's pending deadline for this link, in `SystemClock` nanoseconds (0:
    /// none); lets hot paths skip rescheduling when the timer will wake it soon enough.
    private let scheduledWake = Atomic<UInt64>(0)
    private let wallClock = SystemClock()
    private let metrics: LinkMetrics

    init(role: ReliableLinkCore.Role, session: SessionID, transport: any Transport, remote: Address?,
         configuration: Configuration, handler: Handler?) {
        self.role = role
        self.session = session
        self.transport = transport
        self.remoteAddress = remote
        self.configuration = configuration
        self.clock = configuration.clock
        self.maximumFrameSize = configuration.maximumFrameSize
        self.frameLimit = Atomic(configuration.maximumFrameSize)
        self.coarseNow = Atomic(configuration.clock.now().nanoseconds)
        state = Mutex(State(core: ReliableLinkCore(role: role, session: session, configuration: configuration.core)))
        handlerSlot = HandlerSlot(handler)
        metrics = LinkMetrics(role: role, factory: configuration.metricsFactory)
    }

    /// Opens the initiating end of a new session to the `ReliableListener` at `address`.
    ///
    /// Returns at once; the link connects in the background, reconnecting with backoff, and
    /// messages sent meanwhile are queued.
    public static func connect(over transport: any Transport, to address: Address,
                               session: SessionID = .generate(),
                               configuration: Configuration = Configuration(),
                               handler: Handler) -> ReliableLink {
        let link = ReliableLink(role: .initiator, session: session, transport: transport, remote: address,
                                configuration: configuration, handler: handler)
        link.startTicking()
        link.tick()
        return link
    }

    // MARK: Public operations

    /// Queues a message for the peer.
    /// - Throws: `ReliableLinkError.closed` after `close`, `.queueFull` when too many messages
    ///   await acknowledgement, `.tooLarge` when it cannot fit one frame (of the link's
    ///   `maximumFrameSize`, or the connection's limit once connected, when smaller).
    public func send(_ message: Envelope) throws(ReliableLinkError) {
        let size = Self.wireSize(of: message)
        let limit = frameLimit.load(ordering: .relaxed)
        if size > limit {
            throw .tooLarge(size: size, limit: limit)
        }
        let now = MonotonicInstant(nanoseconds: coarseNow.load(ordering: .relaxed))
        var error: ReliableLinkError? = nil
        var refusal: Refusal? = nil
        var pull: PullRequest? = nil
        var claimed: Claimed? = state.withLock { s in
            if s.pulls {
                // The frame waits in the core; the connection's next pull takes it.
                error = s.core.queue(message, now: now)
                pull = Self.pullRequest(&s)
                return nil
            }
            if let direct = Self.directSender(s) {
                // Nothing queued or in flight: the frame goes to the connection now, in order.
                error = s.core.send(message, now: now) { refusal = direct.transmit($0) }
                return nil
            }
            if let e = s.core.send(message, now: now, into: &s.work) { error = e; return nil }
            return Self.enqueue(&s)
        }
        if let pull { request(pull) }
        if let refusal { transmitRefused(refusal) }
        if let error { throw error }
        // `take()` leaves no second reference behind, so the batch stays unique (no copy).
        if let c = claimed.take() { flush(c) }
    }

    /// Queues several messages for the peer, in order, with one lock acquisition, and hands
    /// their transmissions to the transport as one batch.
    /// - Throws: like `send`; messages before the refused one stay queued (they will be
    ///   delivered), the refused one and those after it are not.
    public func send(contentsOf messages: [Envelope]) throws(ReliableLinkError) {
        guard !messages.isEmpty else { return }
        let now = MonotonicInstant(nanoseconds: coarseNow.load(ordering: .relaxed))
        var tooLarge: ReliableLinkError? = nil
        var accepted = messages.count
        let limit = frameLimit.load(ordering: .relaxed)
        messages.withUnsafeBufferPointer { ms in
            for i in ms.indices {
                let size = Self.wireSize(of: ms[i])
                if size > limit {
                    tooLarge = .tooLarge(size: size, limit: limit)
                    accepted = i
                    return
                }
            }
        }
        var error: ReliableLinkError? = nil
        var refusal: Refusal? = nil
        var pull: PullRequest? = nil
        let admitted = accepted == messages.count ? messages : Array(messages[..<accepted])
        var claimed: Claimed? = state.withLock { s in
            if s.pulls {
                error = s.core.queue(contentsOf: admitted, now: now).error
                pull = Self.pullRequest(&s)
                return nil
            }
            if let direct = Self.directSender(s) {
                error = s.core.send(contentsOf: admitted, now: now) { refusal = direct.transmit($0) }.error
                return nil
            }
            error = s.core.send(contentsOf: admitted, now: now, into: &s.work).error
            return Self.enqueue(&s)
        }
        if let pull { request(pull) }
        if let refusal { transmitRefused(refusal) }
        if let c = claimed.take() { flush(c) }
        if let error { throw error }
        if let tooLarge { throw tooLarge }
    }

    /// The frame size of `message` once the link has numbered it (the sequence field it sets
    /// takes 8 header bytes when the application left it 0).
    static func wireSize(of message: borrowing Envelope) -> Int {
        FrameEncoder.frameSize(of: message) + (message.sequence == 0 ? 8 : 0)
    }

    /// Advances timers: delivery timeouts, delayed acks, heartbeats, liveness, reconnects.
    public func tick() {
        run(.tick, epoch: nil)
        guard role == .acceptor else { return }
        let now = clock.now()
        let idle = state.withLock { $0.core.isIdle(now: now, for: configuration.idleSessionTimeout) }
        if idle, let expire = onIdle.withLock({ c -> (@Sendable (ReliableLink) -> Void)? in
            let e = c
            c = nil
            return e
        }) {
            expire(self)
        }
    }

    /// True once the link is closed.
    public var isClosed: Bool { state.withLock { $0.core.phase == .closed } }

    /// True while the liveness bound has passed without hearing from the peer (until a
    /// handshake with it completes again).
    public var isPeerLost: Bool { state.withLock { $0.core.peerLost } }

    /// False while more than `writableHighWatermark` messages await acknowledgement.
    public var isWritable: Bool {
        state.withLock { $0.core.queuedCount <= configuration.writableHighWatermark }
    }

    /// Returns once at most `writableHighWatermark` messages await acknowledgement, suspending
    /// until acknowledgements bring them down to `writableLowWatermark` otherwise: flow
    /// control for bulk senders, like a transport's `waitUntilWritable`. Not cancellable: it
    /// returns when acknowledgements arrive, when the delivery timeout hands the messages back
    /// (on ticks; with `automaticTicks` off, only when you call `tick()`) or when the link closes.
    /// - Throws: `ReliableLinkError.closed` when the link is (or gets) closed.
    public func waitUntilWritable() async throws(ReliableLinkError) {
        let now: ReliableLinkError?? = state.withLock { s in
            if s.core.phase == .closed { return .some(.closed) }
            return s.core.queuedCount <= configuration.writableHighWatermark ? .some(nil) : nil
        }
        if let now {
            if let error = now { throw error }
            return
        }
        let error = await withCheckedContinuation { (c: CheckedContinuation<ReliableLinkError?, Never>) in
            let now: ReliableLinkError?? = state.withLock { s in
                if s.core.phase == .closed { return .some(.closed) }
                if s.core.queuedCount <= configuration.writableLowWatermark { return .some(nil) }
                s.writableWaiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
        if let error { throw error }
    }

    /// Callers suspended in `waitUntilWritable` (for tests).
    var writableWaiterCount: Int { state.withLock { $0.writableWaiters.count } }

    /// Takes the writability waiters that may go on: all of them once the queue is at or below
    /// the low watermark (or the link is closed).
    private static func releasedWaiters(_ s: inout State, low: Int) -> Released {
        guard !s.writableWaiters.isEmpty else { return Released() }
        let closed = s.core.phase == .closed
        guard closed || s.core.queuedCount <= low else { return Released() }
        defer { s.writableWaiters = [] }
        return Released(waiters: s.writableWaiters, error: closed ? .closed : nil)
    }

    /// Writability waiters to resume once the lock is released.
    private struct Released {
        var waiters: [CheckedContinuation<ReliableLinkError?, Never>] = []
        var error: ReliableLinkError? = nil

        func resume() {
            for w in waiters { w.resume(returning: error) }
        }
    }

    /// Called (once) by `tick` when an accepted session has been idle too long.
    let onIdle = Mutex<(@Sendable (ReliableLink) -> Void)?>(nil)

    /// Messages waiting for acknowledgement.
    public var queuedCount: Int { state.withLock { $0.core.queuedCount } }

    /// True while a connection is up and the handshake is done.
    public var isEstablished: Bool { state.withLock { $0.core.phase == .established } }

    public var statistics: Statistics {
        state.withLock { s in
            Statistics(queued: s.core.queuedCount, deliveredUpTo: s.core.deliveredUpTo,
                       duplicatesDropped: s.core.duplicatesDropped, outOfOrderDropped: s.core.outOfOrderDropped,
                       retransmitted: s.core.retransmitted, reconnects: s.core.reconnects,
                       lastError: s.core.lastError)
        }
    }

    /// Closes the link; nothing more is accepted for sending. When established, the close is
    /// graceful: the link tells the peer what it delivered (`fin`) and waits up to
    /// `closeTimeout` for the peer's account (`finAck`), so the messages then returned through
    /// `onUndeliverable` (`.linkClosed`) are exactly those the peer did not deliver. Otherwise
    /// everything unacknowledged is returned at once.
    public func close() {
        run(.close, epoch: nil)
        closeConnectionIfClosed()
    }

    /// Closes the link at once, without waiting for the peer.
    public func abort() {
        run(.abort, epoch: nil)
        closeConnectionIfClosed()
    }

    /// Detaches and closes the connection once the core has closed.
    private func closeConnectionIfClosed() {
        let conn: (any TransportConnection)? = state.withLock { s in
            guard s.core.phase == .closed else { return nil }
            let c = s.connection
            Self.setConnection(nil, &s)
            return c
        }
        conn?.close()
    }

    /// Closes the link (gracefully, see `close`) and waits until it is closed and its
    /// background tasks have finished. With `automaticTicks` off, or on a clock other than the
    /// system's, the close is immediate.
    public func shutdown() async {
        // Graceful only where time passes by itself: on a manual clock nobody may advance
        // the clock past `closeTimeout` for us.
        if configuration.automaticTicks && onSystemClock { close() } else { abort() }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let closed = state.withLock { s -> Bool in
                if s.core.phase == .closed { return true }
                s.closeWaiters.append(c)
                return false
            }
            if closed { c.resume() }
        }
        closeConnectionIfClosed()
        if let id = timerID.withLock({ $0 }) { LinkTimer.shared.cancel(id) }
        ownClockWake.withLock { w in
            w?.task.cancel()
            w = nil
        }
        let tasks: [Task<Void, Never>] = state.withLock { s in
            s.shutDown = true
            return Array(s.tasks.values)
        }
        for t in tasks { t.cancel() }
        for t in tasks { await t.value }
    }

    /// Resumes the `shutdown` callers once the core has closed (call under the lock).
    private static func takeCloseWaiters(_ s: inout State) -> [CheckedContinuation<Void, Never>] {
        guard !s.closeWaiters.isEmpty, s.core.phase == .closed else { return [] }
        defer { s.closeWaiters = [] }
        return s.closeWaiters
    }

    // MARK: Connection handling

    /// Makes `connection` the link's connection (closing the one it replaces) and returns the
    /// epoch to pass with events from it; nil, with `connection` closed, when the link is
    /// closed or `attempt` is no longer the connect the core waits for.
    func attach(_ connection: any TransportConnection, attempt: UInt64? = nil) -> UInt64? {
        let (old, epoch): ((any TransportConnection)?, UInt64?) = state.withLock { s in
            if s.core.phase == .closed || s.shutDown { return (nil, nil) }
            if let attempt, attempt != s.connectAttempt || s.core.phase != .connecting { return (nil, nil) }
            let o = s.connection
            if role == .acceptor && s.core.phase == .established {
                // The initiator came back while the old connection still looked up (half
                // open): that connection is lost. Until the new one's hello, nothing is sent
                // on it — data before the helloAck would make the initiator drop it.
                s.core.handle(.disconnected("replaced by a new connection from the initiator"),
                              now: clock.now(), into: &s.work)
            }
            Self.setConnection(connection, &s)
            return (o, s.epoch)
        }
        guard let epoch else {
            connection.close()
            return nil
        }
        frameLimit.store(min(maximumFrameSize, connection.maximumFrameSize), ordering: .relaxed)
        old?.close()
        return epoch
    }

    /// A handler for `connection` that feeds the core, ignoring it once it is replaced.
    /// It holds the link strongly; the transport drops the handler after `onClose`, and the
    /// link closes its connection on `close`/`shutdown`, which ends that cycle.
    func connectionHandler(epoch: UInt64) -> ConnectionHandler {
        ConnectionHandler(
            onEnvelopes: { batch in self.receive(batch, epoch: epoch) },
            onEnvelopeViews: { views in self.receive(views: views, epoch: epoch) },
            onClose: { reason in self.run(.disconnected(reason.description), epoch: epoch) })
    }

    /// Feeds a batch of arrivals to the core. When nothing else is queued, the envelopes to
    /// deliver go to the handler straight from `batch` (no `.deliver` action per message);
    /// otherwise they queue behind the earlier work like any event.
    func receive(_ batch: [Envelope], epoch: UInt64) {
        receive(arrivals: batch, epoch: epoch)
    }

    /// `receive(_:epoch:)` for the borrowed views of one read (SpindleTCP): only the envelopes
    /// delivered (and control envelopes) are copied out of the read buffer.
    func receive(views: [EnvelopeView], epoch: UInt64) {
        receive(arrivals: views, epoch: epoch)
    }

    /// Feeds a batch of arrivals to the core. When nothing else is queued, the core names the
    /// arrivals to deliver and they go to the handler straight from the batch, with no
    /// `.deliver` action per message; otherwise the batch queues behind the earlier work like
    /// any event. Generic rather than closure-based so that each delivered envelope is built
    /// where it is handed over (built inside a closure and returned, it was copied on in wider
    /// moves, which stalls store-to-load forwarding per message).
    private func receive<A: Arrival>(arrivals: [A], epoch: UInt64) {
        // Data is timestamped with the coarse time (like sends); control envelopes read the clock.
        let now: MonotonicInstant
        if arrivals.contains(where: { $0.protocolTag == .reliable }) {
            now = clock.now()
            coarseNow.max(now.nanoseconds, ordering: .relaxed)
        } else {
            now = MonotonicInstant(nanoseconds: coarseNow.load(ordering: .relaxed))
        }
        // Runs of consecutive indices to deliver (usually one per batch).
        var deliver: [Range<Int>] = []
        let low = configuration.writableLowWatermark
        var released = Released()
        var closed: [CheckedContinuation<Void, Never>] = []
        var deadline: MonotonicInstant? = nil
        var claimed = state.withLock { s -> Claimed? in
            guard epoch == s.epoch else { return nil }
            defer {
                closed = Self.takeCloseWaiters(&s)
                deadline = s.core.nextDeadline()
            }
            guard !s.flushing && s.work.isEmpty else {
                s.core.handle(.receivedBatch(arrivals.map(\.envelope)), now: now, into: &s.work)
                released = Self.releasedWaiters(&s, low: low)
                return Self.enqueue(&s)
            }
            s.core.receive(arrivals: arrivals, now: now, into: &s.work) { deliver.append($0) }
            released = Self.releasedWaiters(&s, low: low)
            // With deliveries, this thread becomes the flusher: they come first, then the work.
            return deliver.isEmpty ? Self.enqueue(&s) : Self.claim(&s)
        }
        released.resume()
        defer {
            for c in closed { c.resume() }
            schedule(deadline, now: now)
        }
        guard let c = claimed.take() else { return }
        if !deliver.isEmpty, let handler = handlerSlot.handler {
            arrivals.withUnsafeBufferPointer { xs in
                for run in deliver {
                    for i in run { handler.onDeliver(xs[i].delivered) }
                }
            }
        }
        flush(c)
    }

    /// Feeds one event to the core (ignored when it comes from a replaced connection) and
    /// performs the resulting actions.
    func run(_ event: ReliableLinkCore.Event, epoch: UInt64?) {
        let now = clock.now()
        coarseNow.max(now.nanoseconds, ordering: .relaxed)
        let low = configuration.writableLowWatermark
        var released = Released()
        var closed: [CheckedContinuation<Void, Never>] = []
        var deadline: MonotonicInstant? = nil
        var claimed = state.withLock { s -> Claimed? in
            if let epoch, epoch != s.epoch { return nil }
            if case .disconnected = event { Self.setConnection(nil, &s) }
            s.core.handle(event, now: now, into: &s.work)
            released = Self.releasedWaiters(&s, low: low)
            closed = Self.takeCloseWaiters(&s)
            deadline = s.core.nextDeadline()
            return Self.enqueue(&s)
        }
        released.resume()
        if let c = claimed.take() { flush(c) }
        for c in closed { c.resume() }
        schedule(deadline, now: now)
    }

    /// Asks the shared timer to wake this link at `deadline` (on the link's clock), unless it
    /// is already due to wake sooner.
    private func schedule(_ deadline: MonotonicInstant?, now: MonotonicInstant) {
        guard let deadline, configuration.automaticTicks else { return }
        guard onSystemClock else { return scheduleOnOwnClock(deadline) }
        let delay = max(deadline - now, configuration.tickInterval)
        let wake = wallClock.now() + delay
        let current = scheduledWake.load(ordering: .relaxed)
        if current != 0 && current <= wake.nanoseconds { return }
        guard let id = timerID.withLock({ $0 }) else { return }
        scheduledWake.store(wake.nanoseconds, ordering: .relaxed)
        LinkTimer.shared.schedule(id, at: wake)
    }

    /// True when the link's clock is the system's: the shared timer wakes it. A link on another
    /// clock (a `ManualClock` in a test) sleeps on that clock instead, so advancing it ticks the
    /// link.
    private var onSystemClock: Bool { configuration.clock is SystemClock }

    /// The pending sleep of a link on its own clock: its deadline and the task sleeping.
    private let ownClockWake = Mutex<(deadline: MonotonicInstant, task: Task<Void, Never>)?>(nil)

    /// Sleeps on the link's clock until `deadline` (unless already sleeping until earlier), then ticks.
    private func scheduleOnOwnClock(_ deadline: MonotonicInstant) {
        let clock = self.clock
        let replaced: Task<Void, Never>?? = ownClockWake.withLock { w in
            if let current = w, current.deadline <= deadline { return .none }
            let task = Task { [weak self] in
                guard (try? await clock.sleep(until: deadline)) != nil, let self else { return }
                self.ownClockWake.withLock { w in if w?.deadline == deadline { w = nil } }
                self.tick()
            }
            defer { w = (deadline, task) }
            return .some(w?.task)
        }
        if case .some(let old?) = replaced { old.cancel() }
    }

    /// Sets the handler of an accepted link; called once, before its first connection is attached.
    func setHandler(_ handler: Handler) { handlerSlot.handler = handler }

    /// Work taken by the flusher, with the connection to perform it with.
    private struct Claimed: Sendable {
        var batch: [ReliableLinkCore.Action]
        var connection: (any TransportConnection)?
        var epoch: UInt64
    }

    /// A transmission a connection refused without closing (a frame above its limit): no
    /// `onClose` will report it, so the link does.
    private struct Refusal: Sendable {
        var connection: any TransportConnection
        var epoch: UInt64
        var error: TransportError

        /// Runs `send`; returns the refusal when it fails for another reason than the
        /// connection closing (whose `onClose` reports that).
        static func attempt(_ connection: any TransportConnection, _ epoch: UInt64,
                            _ send: () throws(TransportError) -> Void) -> Refusal? {
            do {
                try send()
                return nil
            } catch {
                if case .closed = error { return nil }
                return Refusal(connection: connection, epoch: epoch, error: error)
            }
        }
    }

    /// Treats a refused transmission as the failure of its connection: the core marks the
    /// connection lost (the error becomes `lastError`, which a delivery timeout reports), the
    /// initiator reconnects and everything unacknowledged is retransmitted; the connection
    /// is closed.
    private func transmitRefused(_ r: Refusal) {
        run(.disconnected("the connection refused a transmission: \(r.error)"), epoch: r.epoch)
        r.connection.close()
    }

    /// Changes the connection, purging transmits meant for the old one.
    private static func setConnection(_ c: (any TransportConnection)?, _ s: inout State) {
        s.connection = c
        s.sendsUnderLock = c.map { !$0.deliversDuringSend } ?? false
        s.pulls = s.sendsUnderLock && c?.supportsWritePulls == true
        s.pullRequested = false
        s.epoch &+= 1
        s.work.removeAll { action in
            switch action {
            case .transmit, .closeConnection: return true
            default: return false
            }
        }
    }

    /// The connection a new transmission may go to at once, under the lock: one whose sends
    /// never run handlers, with no flusher performing earlier actions (which may include
    /// transmits) and none waiting.
    private static func directSender(_ s: borrowing State) -> DirectSender? {
        guard s.sendsUnderLock, !s.flushing, s.work.isEmpty, let connection = s.connection else { return nil }
        return DirectSender(connection: connection, epoch: s.epoch)
    }

    /// Sends frames straight to the current connection (see `directSender`).
    private struct DirectSender {
        let connection: any TransportConnection
        let epoch: UInt64

        /// Returns the refusal when the connection refuses the frames without closing.
        func transmit(_ frames: UnsafeRawBufferPointer) -> Refusal? {
            Refusal.attempt(connection, epoch) { () throws(TransportError) in try connection.send(encodedFrames: frames) }
        }
    }

    /// A pull to ask `connection` for (see `pullRequest`).
    private struct PullRequest: Sendable {
        let connection: any TransportConnection
        let epoch: UInt64
    }

    /// The pull to request after a send queued frames, when none is pending: with the lock
    /// released, `request` asks the connection for it.
    private static func pullRequest(_ s: inout State) -> PullRequest? {
        guard s.pulls, !s.pullRequested, s.core.hasUnsent, let connection = s.connection else { return nil }
        s.pullRequested = true
        return PullRequest(connection: connection, epoch: s.epoch)
    }

    /// Asks the connection to pull; when it refuses (it is closing, and its `onClose` will
    /// report that), the frames stay in the core for the retransmission after the next handshake.
    private func request(_ p: PullRequest) {
        let epoch = p.epoch
        if p.connection.requestWritePull({ [self] in pull(epoch: epoch) }) { return }
        state.withLock { s in
            if s.epoch == epoch { s.pullRequested = false }
        }
    }

    /// A connection's pull (on its writing thread): hands it every frame queued since the last
    /// one, unless a flusher is performing earlier actions — it then sends them when it ends,
    /// after those actions, so transmissions keep the core's order. Frames handed over count
    /// as sent even when the connection turns out closed (`.closed`): its `onClose` then
    /// reports the loss, and the handshake of the next connection retransmits them.
    private func pull(epoch: UInt64) {
        var refusal: Refusal? = nil
        state.withLock { s in
            guard s.epoch == epoch else { return }
            s.pullRequested = false
            guard let direct = Self.directSender(s) else { return }
            s.core.takeUnsent { refusal = direct.transmit($0) }
        }
        if let refusal { transmitRefused(refusal) }
    }

    /// Claims the flusher role and takes the work when nobody is flushing (so the common case
    /// costs one lock round trip).
    private static func enqueue(_ s: inout State) -> Claimed? {
        guard !s.flushing, !s.work.isEmpty else { return nil }
        return claim(&s)
    }

    /// Claims the flusher role (nobody holds it) and takes the work, possibly none.
    private static func claim(_ s: inout State) -> Claimed {
        s.flushing = true
        var batch: [ReliableLinkCore.Action] = []
        swap(&batch, &s.spare)
        swap(&batch, &s.work)
        return Claimed(batch: batch, connection: s.connection, epoch: s.epoch)
    }

    /// Performs work in order until none is left. Only one flusher runs at a time.
    private func flush(_ first: consuming Claimed) {
        // Take the claim apart by moving: `batch` must stay uniquely referenced, or every
        // reverse/removeAll below would copy it.
        var claimed = consume first
        var batch: [ReliableLinkCore.Action] = []
        swap(&batch, &claimed.batch)
        var handler: Handler? = nil
        var connection = claimed.connection
        var epoch = claimed.epoch
        var refusal: Refusal? = nil
        // A refusal of the frames queued (in pull mode) while this flusher ran; see below.
        var lateRefusal: Refusal? = nil
        // Consecutive transmits go to the transport as one `send(contentsOf:)`.
        var transmits: [Envelope] = []
        // A failed send on a closing connection is reported by its onClose; any other
        // failure is remembered and reported once this flush ends.
        func transmit(_ send: (any TransportConnection) throws(TransportError) -> Void) {
            guard let c = connection, refusal == nil else { return }
            refusal = Refusal.attempt(c, epoch) { () throws(TransportError) in try send(c) }
        }
        while true {
            // Move actions out one by one (reverse + popLast moves without copying).
            batch.reverse()
            while let action = batch.popLast() {
                switch action {
                case .transmit(let e):
                    let more: Bool
                    if case .transmit? = batch.last { more = true } else { more = false }
                    if more {
                        transmits.append(e)
                    } else if transmits.isEmpty {
                        transmit { c throws(TransportError) in try c.send(e) }
                    } else {
                        transmits.append(e)
                        transmit { c throws(TransportError) in try c.send(contentsOf: transmits) }
                        transmits.removeAll(keepingCapacity: true)
                    }
                case .deliver(let e):
                    if handler == nil { handler = handlerSlot.handler }
                    handler?.onDeliver(e)
                case .undeliverable(let es, let why):
                    metrics.returned(es.count, why)
                    if handler == nil { handler = handlerSlot.handler }
                    handler?.onUndeliverable(es, why)
                case .notify(let event):
                    metrics.event(event)
                    if handler == nil { handler = handlerSlot.handler }
                    handler?.onEvent?(event)
                case .closeConnection:
                    connection?.close()
                case .connect:
                    metrics.connectAttempts.increment()
                    startConnecting()
                }
            }
            batch.removeAll(keepingCapacity: true)
            let more: Bool = state.withLock { s in
                if s.work.isEmpty {
                    s.flushing = false
                    swap(&batch, &s.spare)
                    // Frames queued while this flusher ran (pulls leave them to it) go out
                    // now, after its actions — unless the connection refused one of them
                    // (it is being closed: the frames go with the retransmission).
                    if s.pulls, refusal == nil || epoch != s.epoch, let direct = Self.directSender(s) {
                        s.core.takeUnsent { lateRefusal = direct.transmit($0) }
                    }
                    return false
                }
                swap(&batch, &s.work)
                if s.epoch != epoch { refusal = nil }   // reported only for the connection it concerns
                connection = s.connection
                epoch = s.epoch
                return true
            }
            if !more {
                if let refusal { transmitRefused(refusal) }
                if let lateRefusal { transmitRefused(lateRefusal) }
                return
            }
        }
    }

    private func startConnecting() {
        guard let address = remoteAddress else { return }
        let attempt: UInt64 = state.withLock { s in
            s.connectAttempt &+= 1
            return s.connectAttempt
        }
        spawn { link in
            do {
                let c = try await link.transport.connect(to: address)
                // attach closes `c` when the attempt was abandoned (timed out) or the link closed.
                guard let epoch = link.attach(c, attempt: attempt) else { return }
                c.start(link.connectionHandler(epoch: epoch))
                link.run(.connected, epoch: epoch)
            } catch {
                if link.isCurrent(attempt) { link.run(.connectFailed("\(error)"), epoch: nil) }
            }
        }
    }

    /// True while `attempt` is the connect the core is waiting for.
    private func isCurrent(_ attempt: UInt64) -> Bool {
        state.withLock { $0.connectAttempt == attempt && $0.core.phase == .connecting }
    }

    /// Joins the shared timer (with `automaticTicks`) and schedules the first tick.
    func startTicking() {
        guard configuration.automaticTicks else { return }
        if onSystemClock {
            let id = LinkTimer.shared.register(self)
            timerID.withLock { $0 = id }
        }
        let now = clock.now()
        schedule(state.withLock { $0.core.nextDeadline() } ?? now, now: now)
    }

    /// Runs `body` as a task the link tracks, so `shutdown` can wait for it.
    private func spawn(_ body: @escaping @Sendable (ReliableLink) async -> Void) {
        state.withLock { s in
            guard !s.shutDown else { return }
            let id = s.nextTask
            s.nextTask += 1
            s.tasks[id] = Task { [self] in
                await body(self)
                _ = self.state.withLock { $0.tasks.removeValue(forKey: id) }
            }
        }
    }
}

extension ReliableLink: TimerDriven {
    func timerFired() {
        scheduledWake.store(0, ordering: .relaxed)
        tick()
    }
}

/// Holds a link's handler without a lock per read.
private final class HandlerSlot: @unchecked Sendable {
    // @unchecked: `handler` is written once — in the link's init, or by the listener before
    // it attaches the link's first connection — and only read by flushers. Every flusher
    // starts after taking the link's state lock, which `attach` took after the write, so each
    // read happens after the write and no write races a read.
    var handler: ReliableLink.Handler?
    init(_ handler: ReliableLink.Handler?) { self.handler = handler }
}
