import Logging
import SpindleKernel
import Synchronization

/// Why a request on a control channel got no reply.
public enum LinkFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer could not be reached: the transport's error (unreachable, refused authentication).
    case transport(TransportError)
    /// No reply within the request's timeout.
    case timedOut(Duration)
    /// Nothing was heard from the peer for the liveness bound: it is declared lost.
    case peerLost(String)
    /// The peer came back as a new incarnation (it restarted, or gave up on the session).
    case peerRestarted
    /// The channel was closed, here or by the peer.
    case closed(String)
    /// The reliable link refused the message (too large for a frame, queue full).
    case refused(String)

    public var description: String {
        switch self {
        case .transport(let e): return e.description
        case .timedOut(let d): return "no reply within \(d)"
        case .peerLost(let why): return "peer lost (\(why))"
        case .peerRestarted: return "peer restarted: the session it answered in is over"
        case .closed(let why): return "channel closed (\(why))"
        case .refused(let why): return "message refused: \(why)"
        }
    }

    /// The failure for requests whose messages a link handed back.
    init(_ reason: UndeliverableReason) {
        switch reason {
        case .timedOut(let after, _):
            self = .timedOut(after)
        case .linkClosed: self = .closed("the link was closed")
        case .peerUnresponsive(let after): self = .peerLost("nothing heard from the peer for \(after)")
        case .peerRestarted: self = .peerRestarted
        case .peerClosed: self = .closed("the peer closed the session")
        }
    }
}

/// Host-mesh messages over one reliable link: correlated requests with timeouts, replies, and
/// one-way pushes. Every control channel of the host mesh (client↔agent, proc↔agent, admin
/// queries) is one of these, so reconnects, retransmission, duplicate suppression, heartbeats
/// and the liveness bound come from the kernel's `ReliableLink`.
///
/// Replies (envelopes with the `.response` flag) resume the request with the same correlation;
/// everything else goes to `onMessage` with its correlation (0 for pushes). A request fails at
/// once — never waits for its timeout — when the link hands its message back, when the peer
/// is declared lost or restarted, when the peer closes the session, and when the channel is
/// closed. A reply with no request waiting (it came after its request failed) is dropped and
/// counted (`lateReplies`), never delivered anywhere else.
final class ControlChannel: Sendable {
    typealias MessageHandler = @Sendable (ControlChannel, HostMeshMessage, UInt64) -> Void
    typealias EventHandler = @Sendable (ControlChannel, ReliableLinkEvent) -> Void

    private struct Pending {
        var continuation: CheckedContinuation<Result<HostMeshMessage, LinkFailure>, Never>
        var timer: Task<Void, Never>?
    }

    private struct State {
        var nextCorrelation: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
        /// Set once the channel is closed for good; requests fail with it.
        var closed: LinkFailure?
        /// Set when `failFast` and connecting failed before the first handshake.
        var connectFailure: TransportError?
        var everConnected = false
        var lateReplies = 0
        /// Callers of `waitUntilPeerGone`.
        var goneWaiters: [CheckedContinuation<Void, Never>] = []
        var peerGone = false
        /// Set while the peer is lost or has closed the session (until it connects again):
        /// new requests fail at once with it instead of waiting for their timeout.
        var peerDown: LinkFailure?
    }

    /// The link, strongly held by an initiating channel (its owner keeps the channel) and
    /// weakly by an accepted one (the listener keeps the link, whose handler keeps the channel).
    private enum LinkHold: Sendable {
        case strong(ReliableLink)
        case weak(WeakLink)
    }
    private final class WeakLink: Sendable {
        private let box = Mutex<Weak>(Weak())
        private struct Weak { weak var link: ReliableLink? }
        init(_ l: ReliableLink) { box.withLock { $0.link = l } }
        var link: ReliableLink? { box.withLock { $0.link } }
    }

    private let state = Mutex(State())
    private let hold = Mutex<LinkHold?>(nil)
    /// The handlers, in a class: a tuple of closures in a `Mutex` had its closures
    /// reabstracted (and a context allocated, and leaked) on every read.
    private final class Handlers: Sendable {
        let onMessage: MessageHandler
        let onEvent: EventHandler?
        init(_ m: @escaping MessageHandler, _ e: EventHandler?) { onMessage = m; onEvent = e }
    }
    private let handlers: Mutex<Handlers>
    let logger: Logger
    /// Who the peer is, for logs and errors (the agent's address, or "session …").
    let peer: String
    /// Set for channels made by `connect`: the transport wrapper they connect through.
    let observed: ObservedTransport?
    private let failFast: Bool
    private let onLateReply: (@Sendable () -> Void)?

    private init(peer: String, logger: Logger, observed: ObservedTransport?, failFast: Bool,
                 onMessage: @escaping MessageHandler, onEvent: EventHandler?, onLateReply: (@Sendable () -> Void)?) {
        self.peer = peer
        self.logger = logger
        self.observed = observed
        self.failFast = failFast
        self.onLateReply = onLateReply
        handlers = Mutex(Handlers(onMessage, onEvent))
    }

    deinit {
        if case .strong(let l)? = hold.withLock({ $0 }) { l.close() }
    }

    /// Opens a channel to the listener at `address` (a new session, or `session`).
    ///
    /// - Parameter failFast: when true, a failed connect before the first handshake fails
    ///   every request (waiting or later) with that transport error and closes the channel:
    ///   for attach and one-shot queries. Otherwise the link keeps reconnecting.
    static func connect(over transport: any Transport, to address: Address, session: SessionID = .generate(),
                        configuration: ReliableLink.Configuration, logger: Logger, failFast: Bool,
                        onMessage: @escaping MessageHandler,
                        onEvent: EventHandler? = nil,
                        onLateReply: (@Sendable () -> Void)? = nil) -> ControlChannel {
        let failure = Mutex<ControlChannel?>(nil)
        let observed = ObservedTransport(transport) { error in
            failure.withLock { $0 }?.connectFailed(error)
        }
        let channel = ControlChannel(peer: address.description, logger: logger, observed: observed, failFast: failFast,
                                     onMessage: onMessage, onEvent: onEvent, onLateReply: onLateReply)
        failure.withLock { $0 = channel }
        let link = ReliableLink.connect(over: observed, to: address, session: session, configuration: configuration,
                                        handler: channel.linkHandler(weakly: true))
        channel.hold.withLock { $0 = .strong(link) }
        return channel
    }

    /// Wraps an accepted link (call from the listener's `accept`, and return `handler`).
    static func accepted(_ link: ReliableLink, logger: Logger, onMessage: @escaping MessageHandler,
                         onEvent: EventHandler? = nil) -> (ControlChannel, ReliableLink.Handler) {
        let channel = ControlChannel(peer: "session \(link.session)", logger: logger, observed: nil, failFast: false,
                                     onMessage: onMessage, onEvent: onEvent, onLateReply: nil)
        channel.hold.withLock { $0 = .weak(WeakLink(link)) }
        channel.state.withLock { $0.everConnected = true }
        return (channel, channel.linkHandler(weakly: false))
    }

    /// Replaces the handlers (an accepted channel learns what it serves from its first message).
    func setHandlers(onMessage: @escaping MessageHandler, onEvent: EventHandler?) {
        let h = Handlers(onMessage, onEvent)
        handlers.withLock { $0 = h }
    }

    var link: ReliableLink? {
        switch hold.withLock({ $0 }) {
        case .strong(let l)?: return l
        case .weak(let w)?: return w.link
        case nil: return nil
        }
    }

    /// The reliable session this channel carries.
    var session: SessionID? { link?.session }

    /// Replies that arrived after their request had failed (dropped, never delivered elsewhere).
    var lateReplies: Int { state.withLock { $0.lateReplies } }

    /// True once `close` was called or the channel failed for good.
    var isClosed: Bool { state.withLock { $0.closed != nil } }

    /// True while the peer is declared lost (liveness).
    var isPeerLost: Bool { link?.isPeerLost ?? true }

    /// Messages waiting for the peer's acknowledgement.
    var queuedCount: Int { link?.queuedCount ?? 0 }

    /// Sends `message` and waits for its reply.
    /// - Throws: `LinkFailure` — `.timedOut` when no reply comes within `timeout`; `.peerLost`,
    ///   `.peerRestarted`, `.closed` at once when that happens while waiting (and at once while
    ///   the peer is lost or has closed, until it connects again); `.refused` when the link
    ///   refuses the message; `.transport` for a fail-fast channel that could not connect.
    func request(_ message: HostMeshMessage, timeout: Duration) async throws(LinkFailure) -> HostMeshMessage {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<HostMeshMessage, LinkFailure>, Never>) in
            let registered: Result<UInt64, LinkFailure> = state.withLock { s in
                if let f = s.closed ?? s.peerDown { return .failure(f) }
                let id = s.nextCorrelation
                s.nextCorrelation += 1
                s.pending[id] = Pending(continuation: c)
                return .success(id)
            }
            let id: UInt64
            switch registered {
            case .failure(let f): c.resume(returning: .failure(f)); return
            case .success(let i): id = i
            }
            guard let link else {
                fail(id, .closed("no link"))
                return
            }
            do throws(ReliableLinkError) {
                try link.send(message.envelope(correlation: id))
            } catch {
                fail(id, error == .closed ? .closed("the link is closed") : .refused(error.description))
                return
            }
            let timer = Task { [weak self] in
                do { try await Task.sleep(for: timeout) } catch { return }
                self?.fail(id, .timedOut(timeout))
            }
            let answered = state.withLock { s -> Bool in
                guard s.pending[id] != nil else { return true }
                s.pending[id]!.timer = timer
                return false
            }
            if answered { timer.cancel() }
        }
        return try result.get()
    }

    /// Sends a one-way message (a push) or a reply to `correlation`.
    func send(_ message: HostMeshMessage, replyTo correlation: UInt64 = 0) throws(LinkFailure) {
        guard let link else { throw .closed("no link") }
        do throws(ReliableLinkError) {
            try link.send(message.envelope(correlation: correlation, response: correlation != 0))
        } catch {
            throw error == .closed ? .closed("the link is closed") : .refused(error.description)
        }
    }

    /// Sends, logging instead of throwing (for pushes whose peer may be gone).
    func sendOrLog(_ message: HostMeshMessage, replyTo correlation: UInt64 = 0) {
        do {
            try send(message, replyTo: correlation)
        } catch {
            logger.debug("dropped host-mesh message", metadata: ["peer": "\(peer)", "kind": "\(message.kind)", "error": "\(error)"])
        }
    }

    /// Waits until the peer closes the session, is declared lost or restarts, or the channel closes.
    func waitUntilPeerGone() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let gone = state.withLock { s -> Bool in
                if s.peerGone || s.closed != nil { return true }
                s.goneWaiters.append(c)
                return false
            }
            if gone { c.resume() }
        }
    }

    /// Closes the channel: pending requests fail with `.closed`, the link closes gracefully
    /// (the peer learns the session is over).
    func close() {
        failAll(.closed("closed locally"), permanently: true)
        link?.close()
    }

    /// Closes and waits until the link is closed (its connection released).
    func shutdown() async {
        failAll(.closed("closed locally"), permanently: true)
        await link?.shutdown()
    }

    /// Cuts the transport connection under the link (tests: the link must reconnect).
    func cutConnection() { observed?.cutConnections() }

    // MARK: - Link events

    private func linkHandler(weakly: Bool) -> ReliableLink.Handler {
        if weakly {
            return ReliableLink.Handler(
                onDeliver: { [weak self] e in self?.deliver(e) },
                onUndeliverable: { [weak self] es, why in self?.undeliverable(es, why) },
                onEvent: { [weak self] ev in self?.linkEvent(ev) })
        }
        return ReliableLink.Handler(
            onDeliver: { e in self.deliver(e) },
            onUndeliverable: { es, why in self.undeliverable(es, why) },
            onEvent: { ev in self.linkEvent(ev) })
    }

    private func deliver(_ envelope: Envelope) {
        let message: HostMeshMessage
        do {
            message = try HostMeshMessage(envelope: envelope)
        } catch {
            logger.warning("undecodable host-mesh message", metadata: ["peer": "\(peer)", "error": "\(error)"])
            if envelope.flags.contains(.response) {
                resolve(envelope.correlation, .success(.failure(error.description)))
            } else if envelope.correlation != 0 {
                sendOrLog(.failure(error.description), replyTo: envelope.correlation)
            }
            return
        }
        if envelope.flags.contains(.response) {
            resolve(envelope.correlation, .success(message))
            return
        }
        let h = handlers.withLock { $0 }
        h.onMessage(self, message, envelope.correlation)
    }

    private func undeliverable(_ envelopes: [Envelope], _ why: UndeliverableReason) {
        var lostPushes = 0
        for e in envelopes {
            if e.correlation != 0, !e.flags.contains(.response) {
                fail(e.correlation, LinkFailure(why))
            } else {
                lostPushes += 1
            }
        }
        if lostPushes > 0 {
            logger.debug("host-mesh messages not confirmed by the peer",
                         metadata: ["peer": "\(peer)", "count": "\(lostPushes)", "reason": "\(why)"])
        }
    }

    private func linkEvent(_ event: ReliableLinkEvent) {
        switch event {
        case .connected:
            state.withLock { s in
                s.everConnected = true
                s.peerGone = false
                s.peerDown = nil
            }
        case .peerLost(let why):
            down(.peerLost(why))
        case .peerRestarted:
            down(.peerRestarted)
        case .peerClosed:
            down(.closed("the peer closed the session"))
        }
        let h = handlers.withLock { $0 }
        h.onEvent?(self, event)
    }

    /// The peer is gone for now: pending requests fail, and new ones until it is back.
    private func down(_ failure: LinkFailure) {
        state.withLock { $0.peerDown = failure }
        failAll(failure, permanently: false)
        wakeGoneWaiters()
    }

    private func connectFailed(_ error: TransportError) {
        let first = state.withLock { s -> Bool in
            guard failFast, !s.everConnected, s.connectFailure == nil else { return false }
            s.connectFailure = error
            return true
        }
        guard first else { return }
        failAll(.transport(error), permanently: true)
        wakeGoneWaiters()
        link?.abort()
    }

    private func wakeGoneWaiters() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.peerGone = true
            defer { s.goneWaiters = [] }
            return s.goneWaiters
        }
        for w in waiters { w.resume() }
    }

    // MARK: - Pending requests

    private func resolve(_ id: UInt64, _ result: Result<HostMeshMessage, LinkFailure>) {
        let p = state.withLock { s -> Pending? in
            guard let p = s.pending.removeValue(forKey: id) else {
                s.lateReplies += 1
                return nil
            }
            return p
        }
        guard let p else {
            logger.debug("late reply dropped", metadata: ["peer": "\(peer)", "correlation": "\(id)"])
            onLateReply?()
            return
        }
        p.timer?.cancel()
        p.continuation.resume(returning: result)
    }

    private func fail(_ id: UInt64, _ failure: LinkFailure) {
        guard let p = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return }
        p.timer?.cancel()
        p.continuation.resume(returning: .failure(failure))
    }

    private func failAll(_ failure: LinkFailure, permanently: Bool) {
        let (waiting, closeWaiters) = state.withLock { s -> ([Pending], [CheckedContinuation<Void, Never>]) in
            if permanently, s.closed == nil { s.closed = failure }
            defer { s.pending.removeAll() }
            let w = permanently ? s.goneWaiters : []
            if permanently { s.goneWaiters = [] }
            return (Array(s.pending.values), w)
        }
        for p in waiting {
            p.timer?.cancel()
            p.continuation.resume(returning: .failure(failure))
        }
        for w in closeWaiters { w.resume() }
    }
}
