import DequeModule
import SpindleSupport

/// The reliable-link protocol as a value-type state machine: events in, actions out, no I/O.
///
/// One core is one end of one session. The *initiator* connects (and reconnects with capped
/// exponential backoff and jitter); the *acceptor* waits for the initiator's `hello`. Each
/// side numbers its data 1, 2, 3…, keeps every message until the peer's cumulative ack covers
/// it, retransmits what is unacknowledged on each new connection, delivers in order exactly
/// once and drops duplicates. On an established connection nothing is retransmitted: the
/// stream is ordered, so a gap closes the connection and the next one resends.
///
/// ```
///  send ─► outbox (seq, t) + frame log ──transmit──► peer ──ack(n)──► drop seq ≤ n
///                 ├── older than deliveryTimeout ──► undeliverable(…, .timedOut)
///                 └── peer silent for livenessBound ─► undeliverable(…, .peerUnresponsive)
/// ```
///
/// Liveness: an established side sends an ack every `heartbeatInterval`; a side that hears
/// nothing from its peer for `livenessBound` (in any phase) declares it lost: the connection
/// closes, the session ends and every message not known to be delivered comes back.
/// Incarnations: each side has a random incarnation, sent in `hello`/`helloAck` with the
/// peer's incarnation as last known. A changed incarnation (a restarted or forgetful acceptor,
/// a session ended by liveness) ends the session on both sides — numbering restarts at 1,
/// messages that were transmitted come back as `.peerRestarted`, never-transmitted ones are
/// renumbered and sent — so nothing is dropped as a "duplicate" of another incarnation's
/// numbers. A graceful `close` exchanges `fin`/`finAck`, so that after it the returned
/// messages are exactly those the peer did not deliver. Values in control envelopes are
/// checked against the session's window; an out-of-range one closes the connection.
///
/// Unacknowledged messages are kept encoded, as their frames (`FrameLog`): a send encodes
/// once, an ack only moves the log's start, and the rare retransmission or return decodes.
/// Besides the action-based `send` and `.receivedBatch`, direct forms serve a shell on its
/// fast path: `send(_:now:transmit:)` hands the new frame straight to the connection;
/// `queue(_:now:)` keeps it in the log until `takeUnsent` hands over everything queued since
/// (for a connection that pulls its writes); `receive(batch:now:into:deliver:)` names the
/// envelopes to deliver instead of copying them into `.deliver` actions.
public struct ReliableLinkCore: Sendable {
    public enum Role: Sendable, Equatable { case initiator, acceptor }

    /// Options (durations on the link's clock).
    public struct Configuration: Sendable {
        /// How long a message may stay unacknowledged before it is returned.
        public var deliveryTimeout: Duration
        /// First reconnect delay; doubles per failed attempt up to `maximumBackoff`.
        public var initialBackoff: Duration
        public var maximumBackoff: Duration
        /// Fraction (0...1) of each backoff delay that is randomised away (full jitter at 1).
        public var jitter: Double
        /// Acknowledge after this many in-order messages…
        public var ackEvery: Int
        /// …or this long after the first unacknowledged one (on `tick`).
        public var ackDelay: Duration
        /// `send` refuses more than this many unacknowledged messages…
        public var maximumQueued: Int
        /// …or more than this many bytes of their frames.
        public var maximumQueuedBytes: Int
        /// (Initiator) a connect plus handshake that takes longer is abandoned and retried.
        public var connectTimeout: Duration
        /// An established side sends an ack (a heartbeat) this often.
        public var heartbeatInterval: Duration
        /// A peer heard nothing from for this long is declared lost (see the type's doc).
        public var livenessBound: Duration
        /// Transmitted messages with no acknowledgement progress for this long mean the
        /// connection lost something: it is closed, and the next one resends them.
        public var ackTimeout: Duration
        /// How long a graceful `close` waits for the peer's `finAck`.
        public var closeTimeout: Duration
        /// Seed for the backoff jitter and for later incarnations.
        public var seed: UInt64

        public init(deliveryTimeout: Duration = .seconds(30), initialBackoff: Duration = .milliseconds(10),
                    maximumBackoff: Duration = .seconds(2), jitter: Double = 0.5,
                    ackEvery: Int = 64, ackDelay: Duration = .milliseconds(5),
                    maximumQueued: Int = 1 << 20, maximumQueuedBytes: Int = 256 << 20,
                    seed: UInt64 = 0x11CE, connectTimeout: Duration = .seconds(5),
                    heartbeatInterval: Duration = .seconds(1), livenessBound: Duration = .seconds(5),
                    ackTimeout: Duration? = nil, closeTimeout: Duration = .seconds(1)) {
            self.deliveryTimeout = deliveryTimeout
            self.initialBackoff = initialBackoff
            self.maximumBackoff = maximumBackoff
            self.jitter = min(max(jitter, 0), 1)
            self.ackEvery = max(1, ackEvery)
            self.ackDelay = ackDelay
            self.maximumQueued = max(1, maximumQueued)
            self.maximumQueuedBytes = max(1, maximumQueuedBytes)
            self.seed = seed
            self.connectTimeout = connectTimeout
            self.heartbeatInterval = heartbeatInterval
            self.livenessBound = livenessBound
            self.ackTimeout = ackTimeout ?? livenessBound
            self.closeTimeout = closeTimeout
        }
    }

    public enum Event: Sendable {
        /// The application sends a message.
        case send(Envelope)
        /// An envelope arrived on the current connection.
        case received(Envelope)
        /// Several envelopes arrived on the current connection, in order (one read). Handled
        /// like one `received` each, except that at most one ack is sent, after the batch.
        case receivedBatch([Envelope])
        /// (Initiator) a new connection is open.
        case connected
        /// (Initiator) connecting failed.
        case connectFailed(String)
        /// The current connection closed.
        case disconnected(String)
        /// Time passed: timeouts, acks, heartbeats, liveness, reconnects.
        case tick
        /// Close the link: gracefully when established (`fin`, then the peer's `finAck` or
        /// `closeTimeout`), at once otherwise. Everything not delivered is returned.
        case close
        /// Close the link at once, without waiting for the peer.
        case abort
    }

    public enum Action: Sendable, Equatable {
        /// Send this envelope on the current connection.
        case transmit(Envelope)
        /// Hand this envelope to the application.
        case deliver(Envelope)
        /// (Initiator) open a new connection now, then report `.connected` or `.connectFailed`.
        case connect
        /// Close the current connection, for this reason.
        case closeConnection(ReliableLinkFault)
        /// These messages will not (or may not) be delivered; tell their sender.
        case undeliverable([Envelope], UndeliverableReason)
        /// Tell the application how the peer is doing.
        case notify(ReliableLinkEvent)
    }

    public enum Phase: Sendable, Equatable {
        /// No connection; (initiator) reconnect at the instant, if set.
        case disconnected(reconnectAt: MonotonicInstant?)
        /// (Initiator) waiting for `connected` / `connectFailed`.
        case connecting
        /// Connection up, waiting for the peer's handshake.
        case handshaking
        case established
        /// `fin` sent; waiting for the peer's `finAck` until the instant given.
        case closing(until: MonotonicInstant)
        case closed
    }

    /// One unacknowledged message; its frame ends at `frameEnd` in `log` (and starts where
    /// the previous one ends, or at the log's start).
    private struct Pending: Sendable {
        var sequence: UInt64
        var queuedAt: MonotonicInstant
        var frameEnd: Int
    }

    public let role: Role
    public let session: SessionID
    public let configuration: Configuration
    public private(set) var phase: Phase

    /// This side's incarnation: random, changed whenever this side ends the session.
    public private(set) var incarnation: UInt64
    /// The peer's incarnation as last seen in its handshake (0 before the first).
    public private(set) var peerIncarnation: UInt64 = 0

    /// Unacknowledged messages, ascending consecutive sequences.
    private var outbox: Deque<Pending> = []
    /// Their frames, in the same order.
    private var log = FrameLog()
    /// Frames from here to the log's end have not been transmitted on the current connection
    /// (`queue` leaves them for `takeUnsent`; every other send path transmits at once).
    private var unsentFrom = 0
    /// Frames before this log position have been handed to some connection (so the peer may
    /// have delivered them); those after it never left this side.
    private var transmittedEnd = 0
    private var nextSequence: UInt64 = 1
    /// Next sequence to deliver.
    private var expected: UInt64 = 1
    /// In-order messages received since the last ack sent.
    private var unacknowledged = 0
    /// True while a `receivedBatch` is handled: the ack waits for the end of the batch.
    private var coalescingAcks = false
    private var firstUnacknowledgedAt: MonotonicInstant?
    /// The last time the peer acknowledged something new (or the outbox became non-empty).
    private var lastAckProgressAt: MonotonicInstant = .zero
    /// The last time anything arrived from the peer (nil until the first event).
    private var lastHeardAt: MonotonicInstant?
    private var lastHeartbeatAt: MonotonicInstant = .zero
    /// Set when the liveness bound passes; cleared when the peer is heard again.
    public private(set) var peerLost = false
    /// When the last tick expected the next one (its `nextDeadline`). A tick much later than
    /// that means this process was not scheduled (a stall, a pause): the time it lost does
    /// not count against the peer's liveness.
    private var expectedTickAt: MonotonicInstant?
    private var attempt = 0
    /// When the current connect or handshake started.
    private var phaseSince: MonotonicInstant = .zero
    /// When the connection was lost (nil while connected or before the first connection).
    public private(set) var disconnectedAt: MonotonicInstant?
    /// The last connection failure seen (nil until one happens).
    public private(set) var lastError: String?
    private var rng: SplitMix64
    /// Mixed into every new incarnation, so that they differ between processes.
    private let incarnationSalt: UInt64

    /// Counters for tests and operators.
    public private(set) var duplicatesDropped = 0
    public private(set) var outOfOrderDropped = 0
    public private(set) var retransmitted = 0
    public private(set) var reconnects = 0
    /// Sessions ended by this side or the peer (liveness, restart, `fin`).
    public private(set) var sessionsEnded = 0
    /// Ticks that came so late that the stall was not counted against the peer.
    public private(set) var pausesForgiven = 0

    /// - Parameters:
    ///   - role: `.initiator` starts by asking to `.connect`; `.acceptor` waits for a hello.
    ///   - session: the session both sides name in their hellos.
    ///   - configuration: timeouts, bounds and the liveness settings.
    ///   - incarnation: this side's first incarnation; nil draws a random one (pass a fixed
    ///     value only for deterministic tests: a restarted process must get a new one).
    public init(role: Role, session: SessionID, configuration: Configuration = Configuration(),
                incarnation: UInt64? = nil) {
        self.role = role
        self.session = session
        self.configuration = configuration
        self.phase = .disconnected(reconnectAt: role == .initiator ? .zero : nil)
        self.rng = SplitMix64(seed: configuration.seed ^ session.raw.low)
        let first = incarnation ?? UInt64.random(in: 1 ... .max)
        self.incarnation = max(first, 1)
        self.incarnationSalt = first
    }

    /// Messages waiting for acknowledgement.
    public var queuedCount: Int { outbox.count }

    /// Bytes of the frames waiting for acknowledgement.
    public var queuedBytes: Int { log.end - log.start }

    /// True when the link has had no connection for at least `idle` and holds nothing
    /// unacknowledged: an acceptor may then forget the session.
    public func isIdle(now: MonotonicInstant, for idle: Duration) -> Bool {
        guard case .disconnected = phase, outbox.isEmpty, let since = disconnectedAt else { return false }
        return now - since >= idle
    }
    /// The highest sequence delivered in order.
    public var deliveredUpTo: UInt64 { expected - 1 }

    /// True once closed, or while closing: nothing more is accepted for sending.
    public var isClosedForSending: Bool {
        switch phase {
        case .closed, .closing: return true
        default: return false
        }
    }

    /// Handles one event; returns the actions to perform, in order.
    public mutating func handle(_ event: Event, now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        handle(event, now: now, into: &actions)
        return actions
    }

    /// Handles one event, appending the actions to perform (in order) to `actions`.
    public mutating func handle(_ event: Event, now: MonotonicInstant, into actions: inout [Action]) {
        if lastHeardAt == nil { lastHeardAt = now }
        switch event {
        case .send(let e): _ = send(e, now: now, into: &actions)
        case .received(let e): received(e, now: now, into: &actions)
        case .receivedBatch(let es): received(batch: es, now: now, into: &actions)
        case .connected: connected(now: now, into: &actions)
        case .connectFailed(let why): if phase == .connecting { lost(why, now: now) }
        case .disconnected(let why): lost(why, now: now)
        case .tick: tick(now: now, into: &actions)
        case .close: close(now: now, into: &actions)
        case .abort: finishClose(into: &actions)
        }
    }

    /// Accepts messages for sending, in order; stops at the first refused one.
    /// - Returns: how many were accepted, and the error that stopped the rest (nil when all were).
    public mutating func send(contentsOf messages: [Envelope], now: MonotonicInstant,
                              into actions: inout [Action]) -> (accepted: Int, error: ReliableLinkError?) {
        actions.reserveCapacity(actions.count + messages.count)
        return messages.withUnsafeBufferPointer { ms in
            for i in ms.indices {
                if let error = send(ms[i], now: now, into: &actions) { return (i, error) }
            }
            return (ms.count, nil)
        }
    }

    /// Accepts a message for sending.
    /// - Returns: nil, or the error when the link is closed or its queue is full.
    public mutating func send(_ message: Envelope, now: MonotonicInstant,
                              into actions: inout [Action]) -> ReliableLinkError? {
        let from = log.end
        if let error = withUnsafePointer(to: message, { enqueue($0, now: now) }) { return error }
        if phase == .established {
            // Frames left by `queue` go first (decoded; a shell mixes the two forms rarely).
            if unsentFrom < from {
                for e in log.envelopes(from: unsentFrom, to: from) { actions.append(.transmit(e)) }
            }
            var e = message
            e.sequence = nextSequence - 1
            e.flags.insert(.sequenced)
            actions.append(.transmit(e))
            markTransmitted()
        }
        return nil
    }

    /// Accepts a message like `send(_:now:into:)`, but when the link is established its frame
    /// is handed to `transmit` at once (valid only during the call) instead of becoming a
    /// `.transmit` action. For a shell that has no earlier transmissions still in flight, so
    /// sending the frame now keeps the order.
    public mutating func send(_ message: Envelope, now: MonotonicInstant,
                              transmit: (UnsafeRawBufferPointer) -> Void) -> ReliableLinkError? {
        if let error = queue(message, now: now) { return error }
        takeUnsent(transmit)
        return nil
    }

    /// Accepts messages like `send(contentsOf:now:into:)`, handing the frames of those
    /// accepted to `transmit` in one call when the link is established.
    public mutating func send(contentsOf messages: [Envelope], now: MonotonicInstant,
                              transmit: (UnsafeRawBufferPointer) -> Void) -> (accepted: Int, error: ReliableLinkError?) {
        let result = queue(contentsOf: messages, now: now)
        takeUnsent(transmit)
        return result
    }

    /// Accepts a message for sending without transmitting it: its frame waits in the log until
    /// `takeUnsent` hands it over, with every other frame queued since. For a shell whose
    /// connection pulls what it writes (`TransportConnection.requestWritePull`).
    /// - Returns: nil, or the error when the link is closed or its queue is full.
    public mutating func queue(_ message: Envelope, now: MonotonicInstant) -> ReliableLinkError? {
        withUnsafePointer(to: message) { enqueue($0, now: now) }
    }

    /// Accepts messages like `queue(_:now:)`, in order; stops at the first refused one.
    /// - Returns: how many were accepted, and the error that stopped the rest (nil when all were).
    public mutating func queue(contentsOf messages: [Envelope], now: MonotonicInstant) -> (accepted: Int, error: ReliableLinkError?) {
        messages.withUnsafeBufferPointer { ms -> (Int, ReliableLinkError?) in
            guard let base = ms.baseAddress else { return (0, nil) }
            for i in 0..<ms.count {
                if let error = enqueue(base + i, now: now) { return (i, error) }
            }
            return (ms.count, nil)
        }
    }

    /// True when established with frames queued and not yet handed to `takeUnsent`.
    public var hasUnsent: Bool { phase == .established && unsentFrom < log.end }

    /// When established, hands every frame not yet transmitted on this connection to
    /// `transmit` (in one call, valid only during it) and counts them as transmitted. Frames
    /// queued while not established are sent by the retransmission after the handshake.
    public mutating func takeUnsent(_ transmit: (UnsafeRawBufferPointer) -> Void) {
        guard hasUnsent else { return }
        log.withBytes(from: unsentFrom, to: log.end, transmit)
        markTransmitted()
    }

    /// Everything in the log has now been handed to the current connection.
    @inline(__always)
    private mutating func markTransmitted() {
        unsentFrom = log.end
        transmittedEnd = log.end
    }

    /// Numbers `message` and appends its frame to the log. (The envelope comes by pointer: see
    /// `FrameLog.append`.)
    /// - Returns: the error that refuses it (closed, queue full), or nil.
    private mutating func enqueue(_ message: UnsafePointer<Envelope>, now: MonotonicInstant) -> ReliableLinkError? {
        if isClosedForSending { return .closed }
        if outbox.count >= configuration.maximumQueued { return .queueFull(limit: configuration.maximumQueued) }
        if log.end - log.start >= configuration.maximumQueuedBytes {
            return .queueBytesFull(limit: configuration.maximumQueuedBytes)
        }
        guard nextSequence <= ReliableWire.maximumSequence else { return .closed }
        append(message, queuedAt: now)
        return nil
    }

    private mutating func append(_ message: UnsafePointer<Envelope>, queuedAt: MonotonicInstant) {
        let sequence = nextSequence
        nextSequence += 1
        if outbox.isEmpty { lastAckProgressAt = queuedAt }
        let frameEnd = log.append(message, sequence: sequence)
        outbox.append(Pending(sequence: sequence, queuedAt: queuedAt, frameEnd: frameEnd))
    }

    /// The frames of the first `count` pending messages, decoded (retransmission and
    /// returns, both rare).
    private func pendingEnvelopes(count: Int) -> [Envelope] {
        guard count > 0 else { return [] }
        return log.envelopes(from: log.start, to: outbox[count - 1].frameEnd)
    }

    /// Handles a batch of arrivals with acks coalesced: intermediate acks are cumulative and
    /// would be superseded by the last one, so only that one is sent.
    private mutating func received(batch: [Envelope], now: MonotonicInstant, into actions: inout [Action]) {
        actions.reserveCapacity(actions.count + batch.count)
        var deliver: [Int] = []
        receive(batch: batch, now: now, into: &actions) { deliver.append($0) }
        for i in deliver { actions.append(.deliver(batch[i].delivered)) }
    }

    /// Handles a batch of arrivals like the `.receivedBatch` event, except that the envelopes
    /// to deliver are not turned into `.deliver` actions: `deliver` is called with the index
    /// in `batch` of each, in order, during this call. A shell hands `batch[i]` (without the
    /// `sequenced` flag) to the application, after any actions it still holds from earlier
    /// events. The other actions (acks, handshake replies) are appended to `actions`.
    public mutating func receive(batch: [Envelope], now: MonotonicInstant, into actions: inout [Action],
                                 deliver: (Int) -> Void) {
        receive(arrivals: batch, now: now, into: &actions, deliver: deliver)
    }

    /// Like `receive(batch:now:into:deliver:)` for borrowed views (a transport's in-place
    /// decoding): `deliver` gets the index of each view to hand to the application.
    public mutating func receive(views: [EnvelopeView], now: MonotonicInstant, into actions: inout [Action],
                                 deliver: (Int) -> Void) {
        receive(arrivals: views, now: now, into: &actions, deliver: deliver)
    }

    /// `receive(arrivals:now:into:deliverRuns:)` reporting one index at a time.
    mutating func receive<A: Arrival>(arrivals: [A], now: MonotonicInstant, into actions: inout [Action],
                                      deliver: (Int) -> Void) {
        receive(arrivals: arrivals, now: now, into: &actions) { run in
            for i in run { deliver(i) }
        }
    }

    /// One batch with acks coalesced: intermediate acks are cumulative and would be
    /// superseded by the last one, so at most one is sent, at the end. The arrivals to
    /// deliver are reported as runs of consecutive indices, in order. A run of in-order data
    /// (the usual batch is one) is checked field by field without the general path's
    /// per-arrival bookkeeping; anything else goes through `accept` one by one.
    mutating func receive<A: Arrival>(arrivals: [A], now: MonotonicInstant, into actions: inout [Action],
                                      deliverRuns: (Range<Int>) -> Void) {
        heard(now: now, into: &actions)
        coalescingAcks = true
        arrivals.withUnsafeBufferPointer { xs in
            var i = 0
            while i < xs.count {
                if phase == .established {
                    let start = i
                    var next = expected
                    while i < xs.count, xs[i].protocolTag != .reliable, xs[i].flags.contains(.sequenced),
                          xs[i].sequence == next, next <= ReliableWire.maximumSequence {
                        next &+= 1
                        i += 1
                    }
                    if i > start {
                        expected = next
                        unacknowledged += i - start
                        if firstUnacknowledgedAt == nil { firstUnacknowledgedAt = now }
                        deliverRuns(start..<i)
                        continue
                    }
                }
                if accept(xs[i], now: now, into: &actions) { deliverRuns(i..<(i + 1)) }
                i += 1
            }
        }
        coalescingAcks = false
        if phase == .established && unacknowledged >= configuration.ackEvery { sendAck(into: &actions) }
    }

    private mutating func received(_ e: Envelope, now: MonotonicInstant, into actions: inout [Action]) {
        heard(now: now, into: &actions)
        if accept(e, now: now, into: &actions) { actions.append(.deliver(e.delivered)) }
    }

    /// Something arrived from the peer: it is alive. (A peer declared lost counts as back
    /// once a handshake with it completes.)
    @inline(__always)
    private mutating func heard(now: MonotonicInstant, into actions: inout [Action]) {
        lastHeardAt = now
    }

    /// Handles one arrival from its header fields (a control envelope is copied out whole);
    /// returns true when it is the next data envelope, to be delivered.
    private mutating func accept<A: Arrival>(_ a: A, now: MonotonicInstant, into actions: inout [Action]) -> Bool {
        if a.protocolTag == .reliable {
            control(a.envelope, now: now, into: &actions)
            return false
        }
        guard a.flags.contains(.sequenced) else {
            violation("envelope without the sequenced flag (protocol \(a.protocolTag), kind \(a.kind))", into: &actions)
            return false
        }
        let sequence = a.sequence
        if case .closing = phase { return false }   // after `fin`, nothing more is delivered
        guard phase == .established else {
            violation("data (sequence \(sequence)) before the handshake", into: &actions)
            return false
        }
        guard sequence <= ReliableWire.maximumSequence else {
            violation("data sequence \(sequence) is beyond the largest a session uses (\(ReliableWire.maximumSequence))",
                      into: &actions)
            return false
        }
        if sequence == expected {
            expected += 1
            unacknowledged += 1
            if firstUnacknowledgedAt == nil { firstUnacknowledgedAt = now }
            if unacknowledged >= configuration.ackEvery && !coalescingAcks { sendAck(into: &actions) }
            return true
        } else if sequence < expected {
            duplicatesDropped += 1
            unacknowledged += 1            // re-acknowledge: the sender may have missed our ack
            if firstUnacknowledgedAt == nil { firstUnacknowledgedAt = now }
        } else {
            // A gap: the connection lost an envelope though it is ordered. Close it; the next
            // one resends from our cumulative ack.
            outOfOrderDropped += 1
            actions.append(.closeConnection(.sequenceGap(expected: expected, received: sequence)))
        }
        return false
    }

    private mutating func control(_ e: borrowing Envelope, now: MonotonicInstant, into actions: inout [Action]) {
        switch e.kind {
        case ReliableWire.hello where role == .acceptor, ReliableWire.helloAck where role == .initiator:
            handshake(e, now: now, into: &actions)
        case ReliableWire.ack:
            guard phase == .established || isClosing else { return }
            guard e.sequence < nextSequence else {
                violation("ack of sequence \(e.sequence), but only \(nextSequence - 1) were sent", into: &actions)
                return
            }
            acknowledged(upTo: e.sequence, now: now)
        case ReliableWire.skip:
            guard phase == .established else { return }
            guard let target = inWindow(e.sequence) else {
                violation("skip to sequence \(e.sequence), outside the session's window (expecting \(expected))", into: &actions)
                return
            }
            if target > expected { expected = target }
        case ReliableWire.fin:
            peerClosing(finalAck: e.sequence, now: now, into: &actions)
        case ReliableWire.finAck:
            guard isClosing else { return }
            guard e.sequence < nextSequence else {
                violation("finAck of sequence \(e.sequence), but only \(nextSequence - 1) were sent", into: &actions)
                return
            }
            acknowledged(upTo: e.sequence, now: now)
            finishClose(into: &actions)
        default:
            violation("unexpected reliable-link control kind \(e.kind)", into: &actions)
        }
    }

    private var isClosing: Bool {
        if case .closing = phase { return true }
        return false
    }

    /// `value` when it is a sequence the peer may move this side's expectation to: at most
    /// `maximumSkip` beyond what is expected, and never beyond `maximumSequence`; else nil.
    private func inWindow(_ value: UInt64) -> UInt64? {
        guard value <= ReliableWire.maximumSequence else { return nil }
        guard value <= expected || value - expected <= ReliableWire.maximumSkip else { return nil }
        return value
    }

    /// A `hello` (acceptor) or `helloAck` (initiator): incarnations decide whether the session
    /// goes on or starts over; then the peer's ack and lowest held sequence are adopted.
    private mutating func handshake(_ e: borrowing Envelope, now: MonotonicInstant, into actions: inout [Action]) {
        guard let h = ReliableWire.handshakeFields(of: e) else {
            violation("handshake with a malformed payload (\(e.payload.count) bytes)", into: &actions)
            return
        }
        guard h.session == session else {
            violation("handshake for another session", into: &actions)
            return
        }
        let expectedPhase = phase == .handshaking || (role == .acceptor && phase != .closed && !isClosing)
        guard expectedPhase else {
            violation("unexpected handshake in phase \(phase)", into: &actions)
            return
        }
        guard h.incarnation != 0 else {
            violation("handshake without an incarnation", into: &actions)
            return
        }
        if peerIncarnation != 0 && h.incarnation != peerIncarnation {
            // The peer restarted, forgot the session, or ended it: start over.
            endSession(returning: .peerRestarted, into: &actions)
            actions.append(.notify(.peerRestarted))
        }
        // The peer's numbers describe a session with a former incarnation of this side: they
        // mean nothing now (this side started over when it changed incarnation).
        let stale = h.knownPeerIncarnation != 0 && h.knownPeerIncarnation != incarnation
        if !stale {
            guard h.receivedUpTo < nextSequence else {
                violation("handshake acknowledges sequence \(h.receivedUpTo), but only \(nextSequence - 1) were sent",
                          into: &actions)
                return
            }
            guard let lowest = inWindow(h.lowestHeld) else {
                violation("handshake names lowest held sequence \(h.lowestHeld), outside the session's window (expecting \(expected))",
                          into: &actions)
                return
            }
            acknowledged(upTo: h.receivedUpTo, now: now)
            if lowest > expected { expected = lowest }   // the peer abandoned older ones
        }
        peerIncarnation = h.incarnation
        if role == .acceptor {
            actions.append(.transmit(ReliableWire.handshake(
                kind: ReliableWire.helloAck, session: session, incarnation: incarnation,
                knownPeerIncarnation: peerIncarnation, receivedUpTo: expected - 1, lowestHeld: lowestHeld)))
        }
        phase = .established
        disconnectedAt = nil
        attempt = 0
        unacknowledged = 0
        firstUnacknowledgedAt = nil
        lastAckProgressAt = now
        lastHeartbeatAt = now
        peerLost = false
        retransmitAll(into: &actions)
        actions.append(.notify(.connected(peerIncarnation: peerIncarnation)))
    }

    private var lowestHeld: UInt64 { outbox.first?.sequence ?? nextSequence }

    private mutating func acknowledged(upTo n: UInt64, now: MonotonicInstant) {
        guard n < nextSequence else { return }   // checked by the callers; kept as a guard
        guard let first = outbox.first?.sequence, first <= n else { return }
        // Sequences in the outbox are consecutive: drop the first n - first + 1 at once.
        let count = Int(n - first) + 1
        dropFrames(count: count)
        lastAckProgressAt = now
    }

    /// Transmits everything unacknowledged (on a new connection); counts as retransmitted
    /// the messages an earlier connection already carried.
    private mutating func retransmitAll(into actions: inout [Action]) {
        var again = 0
        while again < outbox.count, outbox[again].frameEnd <= transmittedEnd { again += 1 }
        retransmitted += again
        let envelopes = pendingEnvelopes(count: outbox.count)
        actions.reserveCapacity(actions.count + envelopes.count)
        for e in envelopes { actions.append(.transmit(e)) }
        markTransmitted()
    }

    private mutating func sendAck(into actions: inout [Action]) {
        actions.append(.transmit(ReliableWire.control(ReliableWire.ack, sequence: expected - 1)))
        unacknowledged = 0
        firstUnacknowledgedAt = nil
    }

    private mutating func connected(now: MonotonicInstant, into actions: inout [Action]) {
        guard role == .initiator, phase == .connecting else { return }
        phase = .handshaking
        phaseSince = now
        actions.append(.transmit(ReliableWire.handshake(
            kind: ReliableWire.hello, session: session, incarnation: incarnation,
            knownPeerIncarnation: peerIncarnation, receivedUpTo: expected - 1, lowestHeld: lowestHeld)))
    }

    private mutating func lost(_ why: String, now: MonotonicInstant) {
        switch phase {
        case .closed:
            return
        case .closing:
            // The connection went away during a graceful close: the peer cannot answer now.
            lastError = why
            return
        default:
            break
        }
        lastError = why
        if disconnectedAt == nil { disconnectedAt = now }
        unacknowledged = 0
        firstUnacknowledgedAt = nil
        switch role {
        case .acceptor:
            phase = .disconnected(reconnectAt: nil)
        case .initiator:
            phase = .disconnected(reconnectAt: now + backoff())
            attempt += 1
        }
    }

    /// Ends the session on this side: messages that were transmitted (the peer may have
    /// delivered them) go back with `reason`; messages that never left are renumbered from 1
    /// and kept; receiving starts over at 1.
    private mutating func endSession(returning reason: UndeliverableReason, into actions: inout [Action]) {
        sessionsEnded += 1
        var sent = 0
        while sent < outbox.count, outbox[sent].frameEnd <= transmittedEnd { sent += 1 }
        if sent > 0 { actions.append(.undeliverable(returned(count: sent), reason)) }
        let keptAt = outbox.map(\.queuedAt)
        var kept = pendingEnvelopes(count: outbox.count)
        outbox.removeAll()
        log = FrameLog()
        unsentFrom = 0
        transmittedEnd = 0
        nextSequence = 1
        for i in kept.indices {
            kept[i].flags.remove(.sequenced)
            kept[i].sequence = 0
            withUnsafePointer(to: kept[i]) { append($0, queuedAt: keptAt[i]) }
        }
        expected = 1
        unacknowledged = 0
        firstUnacknowledgedAt = nil
    }

    /// This side gives up on the session (liveness): it takes a new incarnation, so the peer
    /// starts over too when they next meet.
    private mutating func endSessionLocally(returning reason: UndeliverableReason, into actions: inout [Action]) {
        endSession(returning: reason, into: &actions)
        incarnation = max((rng.next() ^ incarnationSalt) &+ UInt64(sessionsEnded), 1)
    }

    /// The peer sent `fin`: it delivered everything up to `finalAck` and will deliver nothing
    /// more. Acknowledge what this side delivered, return the rest, and end the session.
    private mutating func peerClosing(finalAck: UInt64, now: MonotonicInstant, into actions: inout [Action]) {
        guard phase == .established else { return }
        guard finalAck < nextSequence else {
            violation("fin acknowledges sequence \(finalAck), but only \(nextSequence - 1) were sent", into: &actions)
            return
        }
        acknowledged(upTo: finalAck, now: now)
        actions.append(.transmit(ReliableWire.control(ReliableWire.finAck, sequence: expected - 1)))
        endSessionLocally(returning: .peerClosed, into: &actions)
        actions.append(.notify(.peerClosed))
        actions.append(.closeConnection(.sessionClosed))
    }

    /// The delay before reconnect attempt `attempt`: capped exponential, minus random jitter.
    private mutating func backoff() -> Duration {
        let base = configuration.initialBackoff.nanosecondsClamped
        let cap = configuration.maximumBackoff.nanosecondsClamped
        let shift = min(attempt, 40)
        let (grown, overflow) = base.multipliedReportingOverflow(by: Int64(1) << shift)
        let full = overflow ? cap : min(grown, cap)
        let cut = Double(rng.next() >> 11) * 0x1.0p-53 * configuration.jitter
        return .nanoseconds(Int64(Double(full) * (1 - cut)))
    }

    private mutating func tick(now: MonotonicInstant, into actions: inout [Action]) {
        defer { expectedTickAt = nextDeadline() }
        if case .closing(let until) = phase {
            if now >= until { finishClose(into: &actions) }
            return
        }
        guard phase != .closed else { return }
        forgiveLocalPause(now: now)
        // Delivery timeout: return what has waited too long (outbox is in queueing order).
        returnExpired(olderThan: configuration.deliveryTimeout, now: now,
                      reason: .timedOut(after: configuration.deliveryTimeout, lastError: lastError), into: &actions)
        checkLiveness(now: now, into: &actions)
        switch phase {
        case .disconnected(let at?) where now >= at:
            phase = .connecting
            phaseSince = now
            reconnects += 1
            actions.append(.connect)
        case .connecting where now - phaseSince >= configuration.connectTimeout:
            lost("connect timed out after \(configuration.connectTimeout)", now: now)
        case .handshaking where role == .initiator && now - phaseSince >= configuration.connectTimeout:
            // The resulting `disconnected` event schedules the reconnect.
            phaseSince = now
            actions.append(.closeConnection(.handshakeTimedOut(after: configuration.connectTimeout)))
        case .established:
            if let first = firstUnacknowledgedAt, unacknowledged > 0, now - first >= configuration.ackDelay {
                sendAck(into: &actions)
                lastHeartbeatAt = now
            }
            if now - lastHeartbeatAt >= configuration.heartbeatInterval {
                sendAck(into: &actions)
                lastHeartbeatAt = now
            }
            if transmittedEnd > log.start, now - lastAckProgressAt >= configuration.ackTimeout {
                // Transmitted and not acknowledged while the peer is heard from: the
                // connection lost something. A new one resends it.
                lastAckProgressAt = now
                actions.append(.closeConnection(.acknowledgementTimedOut(after: configuration.ackTimeout)))
            }
        default:
            break
        }
    }

    /// Returns the messages queued at least `age` ago, with `reason`; when established, tells
    /// the peer to stop waiting for them.
    private mutating func returnExpired(olderThan age: Duration, now: MonotonicInstant, reason: UndeliverableReason,
                                        into actions: inout [Action]) {
        var count = 0
        while count < outbox.count, now - outbox[count].queuedAt >= age { count += 1 }
        guard count > 0 else { return }
        let expired = returned(count: count)
        lastAckProgressAt = now
        if phase == .established {
            actions.append(.transmit(ReliableWire.control(ReliableWire.skip, sequence: lowestHeld)))
        }
        actions.append(.undeliverable(expired, reason))
    }

    /// When this tick comes more than a heartbeat interval after the instant the previous one
    /// asked for, this side was stalled (starved of CPU, paused, its timer late): silence
    /// during the stall says nothing about the peer, so the liveness and ack clocks skip it.
    private mutating func forgiveLocalPause(now: MonotonicInstant) {
        guard let expected = expectedTickAt, now > expected else { return }
        let pause = now - expected
        guard pause > configuration.heartbeatInterval else { return }
        if let heard = lastHeardAt { lastHeardAt = min(now, heard + pause) }
        lastAckProgressAt = min(now, lastAckProgressAt + pause)
        pausesForgiven += 1
    }

    /// Declares the peer lost once nothing has been heard from it for the liveness bound, and
    /// while it stays lost returns what waits longer than that bound.
    private mutating func checkLiveness(now: MonotonicInstant, into actions: inout [Action]) {
        let bound = configuration.livenessBound
        if !peerLost, let heard = lastHeardAt, now - heard >= bound {
            peerLost = true
            let why = "nothing heard from the peer for \(bound)"
            lastError = why
            switch phase {
            case .established, .handshaking:
                actions.append(.closeConnection(.peerUnresponsive(after: bound)))
            default:
                break
            }
            endSessionLocally(returning: .peerUnresponsive(after: bound), into: &actions)
            actions.append(.notify(.peerLost(why)))
        }
        if peerLost {
            returnExpired(olderThan: bound, now: now, reason: .peerUnresponsive(after: bound), into: &actions)
        }
    }

    private mutating func close(now: MonotonicInstant, into actions: inout [Action]) {
        switch phase {
        case .closed, .closing:
            return
        case .established:
            // Acknowledge everything delivered, promise nothing more, and wait for the peer's
            // account of what it delivered.
            actions.append(.transmit(ReliableWire.control(ReliableWire.fin, sequence: expected - 1)))
            phase = .closing(until: now + configuration.closeTimeout)
        default:
            finishClose(into: &actions)
        }
    }

    private mutating func finishClose(into actions: inout [Action]) {
        guard phase != .closed else { return }
        let wasClosing = isClosing
        phase = .closed
        if !outbox.isEmpty {
            actions.append(.undeliverable(returned(count: outbox.count), .linkClosed))
        }
        if wasClosing { actions.append(.closeConnection(.sessionClosed)) }
    }

    /// The next instant at which `tick` has something to do (nil once closed): what a shared
    /// timer sleeps until.
    public func nextDeadline() -> MonotonicInstant? {
        var next: MonotonicInstant? = nil
        func consider(_ t: MonotonicInstant) { if next == nil || t < next! { next = t } }
        switch phase {
        case .closed:
            return nil
        case .closing(let until):
            return until
        case .disconnected(let at):
            if let at { consider(at) }
        case .connecting, .handshaking:
            consider(phaseSince + configuration.connectTimeout)
        case .established:
            consider(lastHeartbeatAt + configuration.heartbeatInterval)
            if unacknowledged > 0, let first = firstUnacknowledgedAt { consider(first + configuration.ackDelay) }
            if transmittedEnd > log.start { consider(lastAckProgressAt + configuration.ackTimeout) }
        }
        if let first = outbox.first {
            consider(first.queuedAt + (peerLost ? configuration.livenessBound : configuration.deliveryTimeout))
        }
        if !peerLost, let heard = lastHeardAt { consider(heard + configuration.livenessBound) }
        return next
    }

    /// Removes the first `count` pending messages and returns them as their sender gave them
    /// (without the `sequenced` flag).
    private mutating func returned(count: Int) -> [Envelope] {
        var envelopes = pendingEnvelopes(count: count)
        for i in envelopes.indices { envelopes[i].flags.remove(.sequenced) }
        dropFrames(count: count)
        return envelopes
    }

    /// Forgets the first `count` pending messages and their frames.
    private mutating func dropFrames(count: Int) {
        log.drop(upTo: outbox[count - 1].frameEnd)
        outbox.removeFirst(count)
        unsentFrom = max(unsentFrom, log.start)
        transmittedEnd = max(transmittedEnd, log.start)
    }

    private mutating func violation(_ what: String, into actions: inout [Action]) {
        actions.append(.closeConnection(.protocolViolation(what)))
    }
}

/// What the core reads of an arrival: an owned envelope or a borrowed view of one.
protocol Arrival {
    var protocolTag: ProtocolTag { get }
    var kind: UInt16 { get }
    var flags: EnvelopeFlags { get }
    var sequence: UInt64 { get }
    /// The arrival as an owned envelope (control envelopes are handled whole).
    var envelope: Envelope { get }
    /// The arrival as the application receives it: owned, without the `sequenced` flag.
    var delivered: Envelope { get }
}

extension Envelope: Arrival {
    var envelope: Envelope { self }

    var delivered: Envelope {
        var e = self
        e.flags.remove(.sequenced)
        return e
    }
}

extension EnvelopeView: Arrival {
    @inline(__always)
    var delivered: Envelope { envelope(removing: .sequenced) }
}
