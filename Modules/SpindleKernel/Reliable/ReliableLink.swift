import DequeModule
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
        /// Messages of *this* side that will not be delivered, with the reason.
        public var onUndeliverable: @Sendable ([Envelope], UndeliverableReason) -> Void

        public init(onDeliver: @escaping @Sendable (Envelope) -> Void,
                    onUndeliverable: @escaping @Sendable ([Envelope], UndeliverableReason) -> Void) {
            self.onDeliver = onDeliver
            self.onUndeliverable = onUndeliverable
        }
    }

    /// Options of a link (protocol options are in `core`).
    public struct Configuration: Sendable {
        public var core: ReliableLinkCore.Configuration
        /// The clock timeouts and backoff are measured on.
        public var clock: any SpindleClock
        /// How often the link's background task ticks the core.
        public var tickInterval: Duration
        /// When false, no background task runs: call `tick()` yourself (tests on a ManualClock).
        public var automaticTicks: Bool
        /// Largest frame the transport carries; larger messages are refused by `send`.
        public var maximumFrameSize: Int

        public init(core: ReliableLinkCore.Configuration = .init(), clock: any SpindleClock = SystemClock(),
                    tickInterval: Duration = .milliseconds(5), automaticTicks: Bool = true,
                    maximumFrameSize: Int = FrameLayout.defaultMaxFrameSize) {
            self.core = core
            self.clock = clock
            self.tickInterval = tickInterval
            self.automaticTicks = automaticTicks
            self.maximumFrameSize = maximumFrameSize
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

    private enum Work: Sendable {
        case transmit(Envelope, any TransportConnection)
        case deliver(Envelope)
        case undeliverable([Envelope], UndeliverableReason)
        case closeConnection(any TransportConnection)
        case connect
    }

    private struct State {
        var core: ReliableLinkCore
        var handler: Handler?
        var connection: (any TransportConnection)?
        var epoch: UInt64 = 0
        var scratch: [ReliableLinkCore.Action] = []
        var work: Deque<Work> = []
        /// An empty buffer with capacity, swapped with `work` by the flusher.
        var spare: Deque<Work> = []
        var flushing = false
        var tasks: [UInt64: Task<Void, Never>] = [:]
        var nextTask: UInt64 = 0
        var shutDown = false
    }

    public let session: SessionID
    public let role: ReliableLinkCore.Role
    /// The address the initiator connects to (nil on the accepting side).
    public let remoteAddress: Address?
    public let configuration: Configuration
    private let transport: any Transport
    private let state: Mutex<State>

    init(role: ReliableLinkCore.Role, session: SessionID, transport: any Transport, remote: Address?,
         configuration: Configuration, handler: Handler?) {
        self.role = role
        self.session = session
        self.transport = transport
        self.remoteAddress = remote
        self.configuration = configuration
        state = Mutex(State(core: ReliableLinkCore(role: role, session: session, configuration: configuration.core),
                            handler: handler))
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
    ///   await acknowledgement, `.tooLarge` when it cannot fit one frame.
    public func send(_ message: Envelope) throws(ReliableLinkError) {
        let size = FrameEncoder.frameSize(of: message)
        if size > configuration.maximumFrameSize {
            throw .tooLarge(size: size, limit: configuration.maximumFrameSize)
        }
        let now = configuration.clock.now()
        let (error, claimed): (ReliableLinkError?, Claimed?) = state.withLock { s in
            s.scratch.removeAll(keepingCapacity: true)
            if let e = s.core.send(message, now: now, into: &s.scratch) { return (e, nil) }
            return (nil, Self.enqueue(&s))
        }
        if let error { throw error }
        if let claimed { flush(claimed) }
    }

    /// Advances timers: delivery timeouts, delayed acks, retransmission, reconnects.
    public func tick() { run(.tick, epoch: nil) }

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

    /// Closes the link: unacknowledged messages go back through `onUndeliverable` with
    /// `.linkClosed`, the connection closes, nothing more is sent or delivered.
    public func close() {
        run(.close, epoch: nil)
        let conn: (any TransportConnection)? = state.withLock { s in
            let c = s.connection
            s.connection = nil
            s.epoch &+= 1
            return c
        }
        conn?.close()
    }

    /// Closes the link and waits until its background tasks have finished.
    public func shutdown() async {
        close()
        let tasks: [Task<Void, Never>] = state.withLock { s in
            s.shutDown = true
            return Array(s.tasks.values)
        }
        for t in tasks { t.cancel() }
        for t in tasks { await t.value }
    }

    // MARK: Connection handling

    /// Makes `connection` the link's connection and (for the acceptor) feeds it the `hello`
    /// that arrived on it. Returns the epoch to pass with later events from it.
    func attach(_ connection: any TransportConnection) -> UInt64? {
        let (old, epoch): ((any TransportConnection)?, UInt64?) = state.withLock { s in
            if s.core.phase == .closed || s.shutDown { return (nil, nil) }
            let o = s.connection
            s.epoch &+= 1
            s.connection = connection
            return (o, s.epoch)
        }
        guard let epoch else {
            connection.close()
            return nil
        }
        old?.close()
        return epoch
    }

    /// A handler for `connection` that feeds the core, ignoring it once it is replaced.
    func connectionHandler(epoch: UInt64) -> ConnectionHandler {
        ConnectionHandler(
            onEnvelope: { [weak self] e in self?.run(.received(e), epoch: epoch) },
            onClose: { [weak self] reason in self?.run(.disconnected(reason.description), epoch: epoch) })
    }

    /// Feeds one event to the core (ignored when it comes from a replaced connection) and
    /// performs the resulting actions.
    func run(_ event: ReliableLinkCore.Event, epoch: UInt64?) {
        let now = configuration.clock.now()
        let claimed = state.withLock { s -> Claimed? in
            if let epoch, epoch != s.epoch { return nil }
            if case .disconnected = event { s.connection = nil }
            s.scratch.removeAll(keepingCapacity: true)
            s.core.handle(event, now: now, into: &s.scratch)
            return Self.enqueue(&s)
        }
        if let claimed { flush(claimed) }
    }

    func setHandler(_ handler: Handler) { state.withLock { $0.handler = handler } }

    /// Work taken by the flusher, with the handler to perform it with.
    private struct Claimed: Sendable {
        var batch: Deque<Work>
        var handler: Handler?
    }

    /// Turns the core's actions into work; when nobody is flushing, claims the flusher role
    /// and takes the work (one lock round trip for the common case).
    private static func enqueue(_ s: inout State) -> Claimed? {
        for action in s.scratch {
            switch action {
            case .transmit(let e):
                // Without a connection the core retransmits after the next handshake.
                if let c = s.connection { s.work.append(.transmit(e, c)) }
            case .deliver(let e): s.work.append(.deliver(e))
            case .undeliverable(let es, let why): s.work.append(.undeliverable(es, why))
            case .closeConnection:
                if let c = s.connection { s.work.append(.closeConnection(c)) }
            case .connect: s.work.append(.connect)
            }
        }
        guard !s.flushing, !s.work.isEmpty else { return nil }
        s.flushing = true
        var batch: Deque<Work> = []
        swap(&batch, &s.spare)
        swap(&batch, &s.work)
        return Claimed(batch: batch, handler: s.handler)
    }

    /// Performs work in order until none is left. Only one flusher runs at a time.
    private func flush(_ first: Claimed) {
        var batch = first.batch
        var handler = first.handler
        while true {
            for w in batch {
                switch w {
                case .transmit(let e, let c):
                    // A failed send means the connection is closing; its onClose reports it.
                    try? c.send(e)
                case .deliver(let e):
                    handler?.onDeliver(e)
                case .undeliverable(let es, let why):
                    handler?.onUndeliverable(es, why)
                case .closeConnection(let c):
                    c.close()
                case .connect:
                    startConnecting()
                }
            }
            batch.removeAll(keepingCapacity: true)
            let more: Bool = state.withLock { s in
                if s.work.isEmpty {
                    s.flushing = false
                    swap(&batch, &s.spare)
                    return false
                }
                swap(&batch, &s.work)
                handler = s.handler
                return true
            }
            if !more { return }
        }
    }

    private func startConnecting() {
        guard let address = remoteAddress else { return }
        spawn { link in
            do {
                let c = try await link.transport.connect(to: address)
                guard let epoch = link.attach(c) else { return }
                c.start(link.connectionHandler(epoch: epoch))
                link.run(.connected, epoch: epoch)
            } catch {
                link.run(.connectFailed("\(error)"), epoch: nil)
            }
        }
    }

    func startTicking() {
        guard configuration.automaticTicks else { return }
        let interval = configuration.tickInterval
        spawn { link in
            while !Task.isCancelled {
                link.tick()
                try? await Task.sleep(for: interval)
            }
        }
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
