import Logging
import Synchronization

/// The accepting side of reliable links: listens on a transport address and keeps one
/// `ReliableLink` per session, re-attaching it when its initiator reconnects.
///
/// The first envelope on each accepted connection must be a well-formed `hello`; its session
/// id picks (or creates) the link. Anything else closes that connection as a protocol
/// violation, and so does silence: a connection with no `hello` within `helloTimeout` is
/// closed. Pending connections and sessions are capped (`maximumPendingConnections`,
/// `maximumSessions`); refusals are counted per peer and logged once, then at powers of ten.
public final class ReliableListener: Sendable {
    private struct Pending {
        var connection: any TransportConnection
        var acceptedAt: MonotonicInstant
    }

    private struct State {
        var links: [SessionID: ReliableLink] = [:]
        var listener: (any TransportListener)?
        /// Accepted connections that have not sent their hello yet.
        var unrouted: [ObjectIdentifier: Pending] = [:]
        /// Refused connections per peer address (for sparse logging).
        var refusals: [String: Int] = [:]
        var closed = false
    }

    private let transport: any Transport
    private let configuration: ReliableLink.Configuration
    private let accept: @Sendable (ReliableLink) -> ReliableLink.Handler
    private let state = Mutex(State())
    private let creation = Mutex(())
    private let timerID = Mutex<UInt64?>(nil)
    /// The address actually listened on.
    public let address: Address

    private init(transport: any Transport, address: Address, configuration: ReliableLink.Configuration,
                 accept: @escaping @Sendable (ReliableLink) -> ReliableLink.Handler) {
        self.transport = transport
        self.address = address
        self.configuration = configuration
        self.accept = accept
    }

    /// Listens on `address`. `accept` is called once per new session with its link (before
    /// anything is delivered) and returns the handler for it; keep the link to send replies.
    public static func listen(over transport: any Transport, on address: Address,
                              configuration: ReliableLink.Configuration = .init(),
                              accept: @escaping @Sendable (ReliableLink) -> ReliableLink.Handler)
        async throws(TransportError) -> ReliableListener {
        let weakBox = WeakListenerBox()
        let l = try await transport.listen(on: address) { conn in
            // Until the listener object exists (or after it is gone) nobody can route: refuse.
            guard let listener = weakBox.listener else { conn.close(); return }
            listener.accepted(conn)
        }
        let listener = ReliableListener(transport: transport, address: l.address,
                                        configuration: configuration, accept: accept)
        listener.state.withLock { $0.listener = l }
        weakBox.set(listener)
        if configuration.automaticTicks {
            let id = LinkTimer.shared.register(listener)
            listener.timerID.withLock { $0 = id }
        }
        return listener
    }

    /// The link of `session`, if that session has connected.
    public func link(for session: SessionID) -> ReliableLink? {
        state.withLock { $0.links[session] }
    }

    /// Every link accepted so far.
    public var links: [ReliableLink] { state.withLock { Array($0.links.values) } }

    /// Connections refused so far, per peer address.
    public var refusals: [String: Int] { state.withLock { $0.refusals } }

    /// Stops listening and shuts every link down: each closes gracefully (see
    /// `ReliableLink.close`), and what the peer did not deliver is returned as `.linkClosed`.
    public func shutdown() async {
        let (l, links, unrouted) = state.withLock { s in
            s.closed = true
            let r = (s.listener, Array(s.links.values), Array(s.unrouted.values))
            s.listener = nil
            s.links = [:]
            s.unrouted = [:]
            return r
        }
        if let id = timerID.withLock({ $0 }) { LinkTimer.shared.cancel(id) }
        l?.close()
        for p in unrouted { p.connection.close() }
        await withTaskGroup(of: Void.self) { group in
            for link in links { group.addTask { await link.shutdown() } }
        }
    }

    /// Closes connections that have not said hello within `helloTimeout` (tests on a manual
    /// clock call it; the shared timer does otherwise).
    public func sweep() {
        let now = configuration.clock.now()
        let timeout = configuration.helloTimeout
        let (silent, next) = state.withLock { s -> ([(ObjectIdentifier, Pending)], MonotonicInstant?) in
            let silent = s.unrouted.filter { now - $0.value.acceptedAt >= timeout }
            for (key, _) in silent { s.unrouted.removeValue(forKey: key) }
            let oldest = s.unrouted.values.map(\.acceptedAt).min()
            return (Array(silent), oldest.map { $0 + timeout })
        }
        for (_, p) in silent {
            refuse(p.connection, "no hello within \(timeout) of connecting")
        }
        if let next { scheduleSweep(at: next, now: now) }
    }

    private func scheduleSweep(at deadline: MonotonicInstant, now: MonotonicInstant) {
        guard let id = timerID.withLock({ $0 }) else { return }
        let delay = max(deadline - now, .milliseconds(1))
        LinkTimer.shared.schedule(id, at: SystemClock().now() + min(delay, .seconds(1)))
    }

    /// Closes a connection this listener will not serve, counting and (sparsely) logging it.
    private func refuse(_ conn: any TransportConnection, _ why: String) {
        let peer = conn.remoteAddress.description
        let count = state.withLock { s -> Int in
            if s.refusals[peer] == nil && s.refusals.count >= 4096 { s.refusals = s.refusals.filter { $0.value > 1 } }
            s.refusals[peer, default: 0] += 1
            return s.refusals[peer]!
        }
        if Self.isLogged(count) {
            configuration.logger.warning("reliable listener refused a connection", metadata: [
                "peer": "\(peer)", "listener": "\(address)", "reason": "\(why)", "refusalsFromPeer": "\(count)"])
        }
        conn.close()
    }

    static func isLogged(_ count: Int) -> Bool {
        var n = count
        while n >= 10 && n % 10 == 0 { n /= 10 }
        return n == 1
    }

    private func accepted(_ conn: any TransportConnection) {
        let key = ObjectIdentifier(conn)
        let now = configuration.clock.now()
        let outcome = state.withLock { s -> Int in
            if s.closed { return 0 }
            if s.unrouted.count >= configuration.maximumPendingConnections { return 1 }
            s.unrouted[key] = Pending(connection: conn, acceptedAt: now)
            return 2
        }
        switch outcome {
        case 0: conn.close(); return
        case 1: refuse(conn, "\(configuration.maximumPendingConnections) connections are already waiting for their hello"); return
        default: break
        }
        scheduleSweep(at: now + configuration.helloTimeout, now: now)
        let router = Router()
        conn.start(ConnectionHandler(
            onEnvelopes: { [weak self] batch in
                guard let route = router.route ?? Self.route(self, conn, key, router, first: batch[0]) else { return }
                route.link.receive(batch, epoch: route.epoch)
            },
            onEnvelopeViews: { [weak self] views in
                guard let route = router.route ?? Self.route(self, conn, key, router, first: views[0].envelope) else { return }
                route.link.receive(views: views, epoch: route.epoch)
            },
            onClose: { [weak self] reason in
                if let route = router.route { route.link.run(.disconnected(reason.description), epoch: route.epoch) }
                _ = self?.state.withLock { $0.unrouted.removeValue(forKey: key) }
            }))
    }

    /// Routes a new connection by its first envelope, which must be a well-formed `hello`:
    /// attaches the connection to that session's link (created if new). Closes the
    /// connection and returns nil otherwise, or when the listener is gone.
    private static func route(_ listener: ReliableListener?, _ conn: any TransportConnection, _ key: ObjectIdentifier,
                              _ router: Router, first e: Envelope) -> Route? {
        guard let listener else { conn.close(); return nil }
        let waiting = listener.state.withLock { $0.unrouted.removeValue(forKey: key) != nil }
        guard waiting else { conn.close(); return nil }   // swept, or the listener shut down
        if let why = ReliableWire.refusal(ofHello: e) {
            listener.refuse(conn, why)
            return nil
        }
        let session = ReliableWire.session(of: e)!
        guard let link = listener.link(creating: session) else {
            listener.refuse(conn, "session \(session) cannot be opened (the listener is closed or holds \(listener.configuration.maximumSessions) sessions)")
            return nil
        }
        guard let epoch = link.attach(conn) else {
            conn.close()
            return nil
        }
        let route = Route(link: link, epoch: epoch)
        router.route = route
        return route
    }

    /// Forgets an idle session: closes its link and removes it (if it is still the current one).
    private func expire(_ link: ReliableLink) {
        state.withLock { s in
            if s.links[link.session] === link { s.links[link.session] = nil }
        }
        link.abort()
    }

    private func link(creating session: SessionID) -> ReliableLink? {
        let existing: (ReliableLink?, Bool) = state.withLock { s in
            (s.links[session], s.closed || s.links.count >= configuration.maximumSessions)
        }
        if let link = existing.0 { return link }
        if existing.1 { return nil }
        // Creation is serialised so that a link is published only after `accept` has given it
        // its handler: a second connection of the same session waits here, then finds it.
        // `accept` runs without the state lock, so it may call `link(for:)` or `links`.
        return creation.withLock { _ -> ReliableLink? in
            let again: (ReliableLink?, Bool) = state.withLock { s in
                (s.links[session], s.closed || s.links.count >= configuration.maximumSessions)
            }
            if let link = again.0 { return link }
            if again.1 { return nil }
            let link = ReliableLink(role: .acceptor, session: session, transport: transport, remote: nil,
                                    configuration: configuration, handler: nil)
            link.setHandler(accept(link))
            link.onIdle.withLock { $0 = { [weak self] l in self?.expire(l) } }
            let published = state.withLock { s in
                if s.closed { return false }
                s.links[session] = link
                return true
            }
            guard published else { return nil }
            link.startTicking()
            return link
        }
    }
}

extension ReliableListener: TimerDriven {
    func timerFired() { sweep() }
}

/// Per-connection routing: set once, by the connection's first envelope.
private final class Router: @unchecked Sendable {
    // @unchecked: `route` is only read and written inside the handler of one connection, whose
    // calls never overlap and are ordered by the transport's delivery lock (happens-before),
    // so no two threads touch it concurrently.
    var route: Route?
}

/// Where a connection's envelopes go once its hello has been seen.
private final class Route: Sendable {
    let link: ReliableLink
    let epoch: UInt64
    init(link: ReliableLink, epoch: UInt64) { self.link = link; self.epoch = epoch }
}

private final class WeakListenerBox: Sendable {
    private let value = Mutex<WeakRef?>(nil)
    private struct WeakRef: Sendable {
        weak var listener: ReliableListener?
    }
    var listener: ReliableListener? { value.withLock { $0?.listener } }
    func set(_ l: ReliableListener) { value.withLock { $0 = WeakRef(listener: l) } }
}
