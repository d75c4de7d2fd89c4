import Synchronization

/// The accepting side of reliable links: listens on a transport address and keeps one
/// `ReliableLink` per session, re-attaching it when its initiator reconnects.
///
/// The first envelope on each accepted connection must be a `hello`; its session id picks
/// (or creates) the link. Anything else closes that connection as a protocol violation.
public final class ReliableListener: Sendable {
    private struct State {
        var links: [SessionID: ReliableLink] = [:]
        var listener: (any TransportListener)?
        /// Accepted connections that have not sent their hello yet.
        var unrouted: [ObjectIdentifier: any TransportConnection] = [:]
        var closed = false
    }

    private let transport: any Transport
    private let configuration: ReliableLink.Configuration
    private let accept: @Sendable (ReliableLink) -> ReliableLink.Handler
    private let state = Mutex(State())
    private let creation = Mutex(())
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
        return listener
    }

    /// The link of `session`, if that session has connected.
    public func link(for session: SessionID) -> ReliableLink? {
        state.withLock { $0.links[session] }
    }

    /// Every link accepted so far.
    public var links: [ReliableLink] { state.withLock { Array($0.links.values) } }

    /// Stops listening and shuts every link down (their unacknowledged messages are returned
    /// as `.linkClosed`).
    public func shutdown() async {
        let (l, links, unrouted) = state.withLock { s in
            s.closed = true
            let r = (s.listener, Array(s.links.values), Array(s.unrouted.values))
            s.listener = nil
            s.links = [:]
            s.unrouted = [:]
            return r
        }
        l?.close()
        for c in unrouted { c.close() }
        for link in links { await link.shutdown() }
    }

    private func accepted(_ conn: any TransportConnection) {
        let key = ObjectIdentifier(conn)
        let open = state.withLock { s in
            if s.closed { return false }
            s.unrouted[key] = conn
            return true
        }
        guard open else { conn.close(); return }
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

    /// Routes a new connection by its first envelope, which must be a `hello` naming the
    /// session: attaches the connection to that session's link (created if new). Closes the
    /// connection and returns nil otherwise, or when the listener is gone.
    private static func route(_ listener: ReliableListener?, _ conn: any TransportConnection, _ key: ObjectIdentifier,
                              _ router: Router, first e: Envelope) -> Route? {
        guard let listener else { conn.close(); return nil }
        _ = listener.state.withLock { $0.unrouted.removeValue(forKey: key) }
        guard e.protocolTag == .reliable, e.kind == ReliableWire.hello,
              let session = ReliableWire.session(of: e) else {
            conn.close()
            return nil
        }
        guard let link = listener.link(creating: session), let epoch = link.attach(conn) else {
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
        link.close()
    }

    private func link(creating session: SessionID) -> ReliableLink? {
        let existing: (ReliableLink?, Bool) = state.withLock { s in (s.links[session], s.closed) }
        if existing.1 { return nil }
        if let link = existing.0 { return link }
        // Creation is serialised so that a link is published only after `accept` has given it
        // its handler: a second connection of the same session waits here, then finds it.
        // `accept` runs without the state lock, so it may call `link(for:)` or `links`.
        return creation.withLock { _ -> ReliableLink? in
            let again: (ReliableLink?, Bool) = state.withLock { s in (s.links[session], s.closed) }
            if again.1 { return nil }
            if let link = again.0 { return link }
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
