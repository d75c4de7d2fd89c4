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
        var closed = false
    }

    private let transport: any Transport
    private let configuration: ReliableLink.Configuration
    private let accept: @Sendable (ReliableLink) -> ReliableLink.Handler
    private let state = Mutex(State())
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
        let (l, links) = state.withLock { s in
            s.closed = true
            let r = (s.listener, Array(s.links.values))
            s.listener = nil
            s.links = [:]
            return r
        }
        l?.close()
        for link in links { await link.shutdown() }
    }

    private func accepted(_ conn: any TransportConnection) {
        let router = Router()
        conn.start(ConnectionHandler(
            onEnvelope: { [weak self] e in
                if let (link, epoch) = router.route { link.run(.received(e), epoch: epoch); return }
                guard let self else { conn.close(); return }
                guard e.protocolTag == .reliable, e.kind == ReliableWire.hello,
                      let session = ReliableWire.session(of: e) else {
                    conn.close()
                    return
                }
                guard let link = self.link(creating: session), let epoch = link.attach(conn) else {
                    conn.close()
                    return
                }
                router.route = (link, epoch)
                link.run(.received(e), epoch: epoch)
            },
            onClose: { reason in
                if let (link, epoch) = router.route { link.run(.disconnected(reason.description), epoch: epoch) }
            }))
    }

    private func link(creating session: SessionID) -> ReliableLink? {
        let (link, isNew): (ReliableLink?, Bool) = state.withLock { s in
            if s.closed { return (nil, false) }
            if let l = s.links[session] { return (l, false) }
            let l = ReliableLink(role: .acceptor, session: session, transport: transport, remote: nil,
                                 configuration: configuration, handler: nil)
            s.links[session] = l
            return (l, true)
        }
        if let link, isNew {
            link.setHandler(accept(link))
            link.startTicking()
        }
        return link
    }
}

/// Per-connection routing: set once by the connection's first envelope. Calls on one
/// connection never overlap, but they may come from different threads, hence the lock.
private final class Router: Sendable {
    private let value = Mutex<(ReliableLink, UInt64)?>(nil)
    var route: (ReliableLink, UInt64)? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

private final class WeakListenerBox: Sendable {
    private let value = Mutex<WeakRef?>(nil)
    private struct WeakRef: Sendable {
        weak var listener: ReliableListener?
    }
    var listener: ReliableListener? { value.withLock { $0?.listener } }
    func set(_ l: ReliableListener) { value.withLock { $0 = WeakRef(listener: l) } }
}
