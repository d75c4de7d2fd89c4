import DequeModule
import Logging
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

/// Runs a `Node` on an `EventLoop` with any `Transport`.
///
/// The node lives on the loop thread: ingress pushes (completions, envelopes, host starts) wake
/// the loop, which polls; after each poll the driver sends the outbound envelopes, hands the
/// outcome to `onOutcome`, and arms one loop timer for the node's next deadline.
///
/// ```
///  transport ──envelope──▶ ingress ──wake──▶ loop.execute { poll } ──▶ outbound ──▶ transport
///  any thread ─complete/start─┘                     ▲  timer at nextDeadline
/// ```
/// Connections: envelopes to a peer go over the first connection known for it — one this
/// driver opened to an address from the node's address book, or one the peer opened to this
/// driver's listener (learned from the first envelope's source).
public final class NodeDriver: @unchecked Sendable {
    // @unchecked Sendable: `node` and every `var` below are touched only on `loop`'s thread
    // (each entry point hops there with `loop.execute`); `ingress`, `loop`, `transport`,
    // `clock` and `configuration` are immutable and Sendable themselves.

    public struct Configuration: Sendable {
        /// Where to accept connections from peers (nil: only dial out).
        public var listenAddress: Address?
        /// Clock for `poll(now:)` (the node's deadlines are on this timeline).
        public var clock: any SpindleClock = SystemClock()
        /// Envelopes held per peer while its connection is being opened.
        public var connectQueueLimit = 4096
        /// Called on the loop thread after every poll that did something.
        public var onOutcome: (@Sendable (PollOutcome) -> Void)?
        public var logger = Logger(label: "spindle.node.driver")

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
    private let node: Node
    private let listenerBox = Mutex<(any TransportListener)?>(nil)
    /// Which accepted connection each peer speaks on, recorded by the connection's handler
    /// *before* the envelope reaches the ingress, so a poll that answers it (even one run from
    /// a timer) finds the way back; `route` moves it into `links` (loop thread).
    private let returnPaths = Mutex<[NodeID: ObjectIdentifier]>([:])

    // Loop-thread state.
    private var links: [NodeID: any TransportConnection] = [:]
    private var connecting: [NodeID: Deque<Envelope>] = [:]
    private var accepted: [ObjectIdentifier: any TransportConnection] = [:]
    private var timer: LoopTimer?
    private var timerDeadline: MonotonicInstant?
    private var stopped = false
    private var droppedUnroutable: UInt64 = 0

    private init(node: sending Node, loop: EventLoop, transport: any Transport, configuration: Configuration) {
        self.node = node
        self.loop = loop
        self.transport = transport
        self.configuration = configuration
        ingress = node.ingress
        nodeID = node.id
    }

    /// Binds `node` to `loop` and `transport`, listening on `configuration.listenAddress`.
    public static func start(node: sending Node, on loop: EventLoop, transport: any Transport,
                             configuration: Configuration = .init()) async throws(NodeDriverError) -> NodeDriver {
        let driver = NodeDriver(node: node, loop: loop, transport: transport, configuration: configuration)
        if let address = configuration.listenAddress {
            do {
                let listener = try await transport.listen(on: address) { [weak driver] conn in
                    driver?.adopt(conn)
                }
                driver.listenerBox.withLock { $0 = listener }
            } catch {
                throw NodeDriverError(operation: "listen on \(address)", reason: error.description)
            }
        }
        driver.ingress.setWaker { [weak driver] in
            guard let driver else { return }
            driver.loop.execute { driver.runPoll() }
        }
        loop.execute { driver.runPoll() }
        return driver
    }

    /// The address the listener bound (port 0 resolved), if listening.
    public var listenAddress: Address? { listenerBox.withLock { $0?.address } }

    /// Starts an execution at `site` (from any thread).
    public func start(site: String, value: Value) throws(IngressError) {
        try ingress.push(.start(site: site, value: value))
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

    /// Stops polling, closes the listener and every connection. The loop and the transport
    /// belong to the caller and stay up.
    public func shutdown() async {
        ingress.setWaker(nil)
        listenerBox.withLock { $0?.close(); $0 = nil }
        _ = try? await loop.submit { [self] in
            stopped = true
            timer?.cancel()
            timer = nil
            for c in links.values { c.close() }
            for c in accepted.values { c.close() }
            links.removeAll()
            accepted.removeAll()
            connecting.removeAll()
        }
    }

    // MARK: Loop thread

    private func runPoll() {
        guard !stopped else { return }
        let outcome = node.poll(now: configuration.clock.now())
        for env in outcome.outbound { route(env) }
        if outcome.status != .idle { configuration.onOutcome?(outcome) }
        if outcome.status == .budgetExhausted {
            // Let other loop work run between budget slices.
            loop.execute { [self] in runPoll() }
            return
        }
        arm(outcome.nextDeadline)
    }

    private func arm(_ deadline: MonotonicInstant?) {
        guard deadline != timerDeadline else { return }
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

    private func route(_ env: Envelope) {
        guard let dest = env.destination else { return }
        if links[dest] == nil, !stopped, let id = returnPaths.withLock({ $0[dest] }), let conn = accepted[id] {
            links[dest] = conn
        }
        if let link = links[dest] {
            do {
                try link.send(env)
                return
            } catch {
                configuration.logger.debug("send to \(dest) failed: \(error)")
                links[dest] = nil
            }
        }
        if connecting[dest] != nil {
            if connecting[dest]!.count < configuration.connectQueueLimit { connecting[dest]!.append(env) } else { droppedUnroutable &+= 1 }
            return
        }
        guard let address = node.context.peers.addresses.lookup(dest)?.first else {
            droppedUnroutable &+= 1
            configuration.logger.debug("no address for \(dest); envelope dropped (its request times out)")
            return
        }
        connecting[dest] = [env]
        let transport = self.transport
        Task { [self] in
            let result: Result<any TransportConnection, TransportError>
            do throws(TransportError) {
                result = .success(try await transport.connect(to: address))
            } catch {
                result = .failure(error)
            }
            loop.execute { [self] in connected(dest, result) }
        }
    }

    private func connected(_ peer: NodeID, _ result: Result<any TransportConnection, TransportError>) {
        let queued = connecting.removeValue(forKey: peer) ?? []
        switch result {
        case .failure(let error):
            droppedUnroutable &+= UInt64(queued.count)
            configuration.logger.info("cannot connect to \(peer): \(error)")
        case .success(let conn):
            guard !stopped else { conn.close(); return }
            watch(conn)
            links[peer] = conn
            for env in queued { route(env) }
        }
    }

    /// An accepted connection: deliver what it brings, remember it as the way back to its peer.
    private func adopt(_ conn: any TransportConnection) {
        loop.execute { [self] in
            guard !stopped else { conn.close(); return }
            accepted[ObjectIdentifier(conn)] = conn
            watch(conn)
        }
    }

    private func watch(_ conn: any TransportConnection) {
        let ingress = self.ingress
        let id = ObjectIdentifier(conn)
        let learned = LearnedFlag()
        conn.start(ConnectionHandler(
            onEnvelope: { [weak self] env in
                // A connection carries one peer's envelopes: the first source it shows is the
                // way back to that peer. Recorded before the push, once per connection (no
                // loop hop per envelope); `route` moves it into `links` when it first answers.
                if let source = env.source, !learned.value.load(ordering: .acquiring), let self {
                    self.returnPaths.withLock { $0[source] = id }
                    learned.value.store(true, ordering: .releasing)
                }
                do { try ingress.push(.envelope(env)) } catch {
                    // Counted on the bus as ingressRejected(full); the sender's request times out.
                }
            },
            onClose: { [weak self] _ in
                guard let self else { return }
                self.loop.execute {
                    self.accepted[id] = nil
                    for (peer, c) in self.links where ObjectIdentifier(c) == id { self.links[peer] = nil }
                    self.returnPaths.withLock { paths in paths = paths.filter { $0.value != id } }
                }
            }))
    }
}

/// Whether a connection's handler has recorded its peer's return path yet.
private final class LearnedFlag: Sendable {
    let value = Atomic<Bool>(false)
}
