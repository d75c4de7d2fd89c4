import Logging
import SpindleEventLoop
import SpindleKernel
import Synchronization

/// A `Transport` over TCP (`tcp://host:port`) and Unix-domain sockets (`unix:///path`), on
/// SpindleEventLoop streams.
///
/// Each connection starts with a handshake: with a `ClusterKey`, the Noise pattern
/// `Noise_NNpsk0_25519_AESGCM_SHA256`, after which every byte travels in encrypted,
/// authenticated records; without one (loopback only), a plain exchange of node ids (see
/// docs/tcp.md). Then it carries envelopes as frames (docs/wire-protocol.md). A peer that sends
/// a malformed or oversized frame or record is disconnected with `.protocolViolation`; other
/// connections and the listener carry on.
///
/// ```swift
/// let transport = try TCPTransport(loopCount: 1)
/// let listener = try await transport.listen(on: Address(parsing: "tcp://127.0.0.1:0")) { conn in
///     conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
/// }
/// let conn = try await transport.connect(to: listener.address)
/// ```
public final class TCPTransport: Transport {
    public let configuration: Configuration
    /// Where connections run.
    private enum Loops: Sendable {
        case one(EventLoop)
        case group(EventLoopGroup, owned: Bool)
    }
    private let loops: Loops
    private let logger: Logger

    private struct Registry {
        var isShutdown = false
        var listeners: [ObjectIdentifier: TCPListener] = [:]
        var connections: [ObjectIdentifier: TCPConnection] = [:]
    }
    private let registry = Mutex(Registry())
    private let refusalLog: RefusalLog
    private let metrics: TCPMetrics

    /// Runs connections on the loops of `group` (round robin); the caller owns the group.
    /// Connections accepted by a listener are spread round robin over the group's loops too.
    public init(group: EventLoopGroup, configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.metrics = TCPMetrics(factory: configuration.metricsFactory)
        self.refusalLog = RefusalLog(metrics: metrics)
        self.loops = .group(group, owned: false)
        self.logger = configuration.logger
    }

    /// Runs every connection on `loop`; the caller owns the loop.
    public init(loop: EventLoop, configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.metrics = TCPMetrics(factory: configuration.metricsFactory)
        self.refusalLog = RefusalLog(metrics: metrics)
        self.loops = .one(loop)
        self.logger = configuration.logger
    }

    /// Creates its own group of `loopCount` loops, which `shutdown()` stops.
    /// - Throws: `EventLoopError` when a loop cannot be started.
    public init(loopCount: Int, configuration: Configuration = Configuration()) throws(EventLoopError) {
        self.configuration = configuration
        self.metrics = TCPMetrics(factory: configuration.metricsFactory)
        self.refusalLog = RefusalLog(metrics: metrics)
        self.loops = .group(try EventLoopGroup(loopCount: max(1, loopCount), namePrefix: "spindle-tcp"), owned: true)
        self.logger = configuration.logger
    }

    private func nextLoop() -> EventLoop {
        switch loops {
        case .one(let loop): return loop
        case .group(let group, _): return group.next()
        }
    }

    private static func checkScheme(_ address: Address) -> Bool {
        switch address {
        case .tcp, .unix: return true
        case .inproc: return false
        }
    }

    // MARK: Transport

    public func listen(on address: Address,
                       accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        try await listen(on: address, as: configuration.nodeID, accept: accept)
    }

    /// Listens like `listen(on:accept:)`, announcing `node` in the handshake of every accepted
    /// connection (instead of `configuration.nodeID`): for several nodes sharing one transport.
    /// - Throws: `.cannotListen` for a TCP address beyond loopback (a wildcard included) when no
    ///   cluster key is configured: plaintext stays on the machine.
    public func listen(on address: Address, as node: NodeID?,
                       accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        guard Self.checkScheme(address) else { throw .unsupportedAddress(address, transport: "TCP") }
        guard configuration.clusterKey != nil || address.isLoopback else {
            throw .cannotListen(address, Self.plaintextRefusal)
        }
        guard !registry.withLock({ $0.isShutdown }) else {
            throw .cannotListen(address, "the transport is shut down")
        }
        let loop = nextLoop()
        let stream: StreamListener
        let pending = PendingHandshakes()
        do {
            stream = try await StreamListener.listen(on: loop, address: address, configuration: streamConfiguration,
                                                     childGroup: acceptGroup) { [weak self] channel in
                self?.accepted(channel, listenAddress: address, node: node, pending: pending, accept: accept)
            }
        } catch {
            throw .cannotListen(address, error.description)
        }
        let listener = TCPListener(stream: stream, advertised: configuration.advertisedAddress) { [weak self] l in
            _ = self?.registry.withLock { $0.listeners.removeValue(forKey: ObjectIdentifier(l)) }
        }
        let registered = registry.withLock { r -> Bool in
            guard !r.isShutdown else { return false }
            r.listeners[ObjectIdentifier(listener)] = listener
            return true
        }
        guard registered else {
            listener.close()
            throw .cannotListen(address, "the transport was shut down while binding")
        }
        logger.debug("listening", metadata: ["address": "\(listener.boundAddress)", "advertised": "\(listener.address)"])
        return listener
    }

    public func connect(to address: Address) async throws(TransportError) -> any TransportConnection {
        try await connect(to: address, as: configuration.nodeID)
    }

    /// Connects like `connect(to:)`, announcing `node` in the handshake (instead of
    /// `configuration.nodeID`): the peer then refuses envelopes on this connection that claim
    /// another source.
    /// - Throws: `.unreachable` for a TCP address beyond loopback when no cluster key is
    ///   configured, besides the errors of `connect(to:)`.
    public func connect(to address: Address, as node: NodeID?) async throws(TransportError) -> any TransportConnection {
        guard Self.checkScheme(address) else { throw .unsupportedAddress(address, transport: "TCP") }
        guard configuration.clusterKey != nil || address.isLoopback else {
            throw .unreachable(address, Self.plaintextRefusal)
        }
        guard !registry.withLock({ $0.isShutdown }) else { throw .closed(.transportShutdown) }
        let loop = nextLoop()
        let channel: StreamChannel
        do {
            channel = try await StreamChannel.connect(on: loop, to: address, configuration: streamConfiguration)
        } catch {
            throw .unreachable(address, error.description)
        }
        let connection = TCPConnection(channel: channel, fallbackAddress: address, configuration: configuration,
                                       localNode: node, refusals: refusalLog, metrics: metrics)
        guard register(connection) else {
            channel.close()
            throw .closed(.transportShutdown)
        }
        let outcome: HandshakeOutcome = await withCheckedContinuation { c in
            let queued = loop.tryExecute { [self] in
                connection.begin(role: .initiator, finished: { [weak self] in self?.unregister($0) }) { outcome in
                    c.resume(returning: outcome)
                }
            }
            if !queued {
                unregister(connection)
                c.resume(returning: .failed(.transportShutdown))
            }
        }
        switch outcome {
        case .established: return connection
        case .failed(let reason): throw .closed(reason)
        }
    }

    public func shutdown() async {
        let (listeners, connections) = registry.withLock { r in
            r.isShutdown = true
            let l = Array(r.listeners.values), c = Array(r.connections.values)
            r.listeners = [:]
            r.connections = [:]
            return (l, c)
        }
        for l in listeners { await l.closeAndWait() }
        // Record the reason on every connection before closing any: a connection whose peer
        // is another connection of this transport would otherwise see that peer close first
        // and report `.closedByPeer`.
        let closing = connections.filter { $0.recordClose(reason: .transportShutdown).first }
        for c in closing { c.closeChannel() }
        for c in connections { await c.waitUntilClosed() }
        // Timers a closing connection cancels from its close callback close one turn later.
        for loop in loopsInUse(connections) { await loop.completedTurns(2) }
        if case .group(let group, owned: true) = loops { await group.shutdown() }
    }

    // MARK: internals

    private var streamConfiguration: StreamConfiguration {
        var s = StreamConfiguration()
        s.highWatermark = configuration.highWatermark
        s.lowWatermark = configuration.lowWatermark
        s.noDelay = configuration.noDelay
        s.keepalive = configuration.keepalive
        s.userTimeout = configuration.userTimeout
        s.connectTimeout = configuration.connectTimeout
        s.closeDeadline = configuration.closeDeadline
        return s
    }

    /// Why TCP without a cluster key is refused beyond loopback.
    static let plaintextRefusal =
        "refusing plaintext TCP beyond loopback: configure a cluster key (`spindle keygen`) so the connection is authenticated and encrypted"

    /// Connections refused so far (failed handshakes, the pending-handshake cap), per peer
    /// host. The log names each host's first refusal and then every power of ten.
    public var refusals: [String: Int] { refusalLog.snapshot }

    /// The loops accepted connections are spread over (nil: they stay on the listener's loop).
    private var acceptGroup: EventLoopGroup? {
        if case .group(let group, _) = loops, group.loops.count > 1 { return group }
        return nil
    }

    /// Runs on the accepted connection's loop (one of the group's) for each accepted socket.
    private func accepted(_ channel: StreamChannel, listenAddress: Address, node: NodeID?, pending: PendingHandshakes,
                          accept: @escaping @Sendable (any TransportConnection) -> Void) {
        let limit = configuration.maxPendingHandshakes
        guard pending.count.load(ordering: .relaxed) < limit else {
            let peer = channel.remoteAddress ?? listenAddress
            refusalLog.record(peer: peer, reason: .protocolViolation(
                "\(peer): \(limit) connections to \(listenAddress) are already in their handshake (maxPendingHandshakes)"),
                logger: logger)
            channel.close()
            return
        }
        let connection = TCPConnection(channel: channel, fallbackAddress: listenAddress, configuration: configuration,
                                       localNode: node, refusals: refusalLog, metrics: metrics)
        guard register(connection) else {
            channel.close()
            return
        }
        pending.count.add(1, ordering: .relaxed)
        connection.begin(role: .acceptor, finished: { [weak self] in self?.unregister($0) }) { outcome in
            pending.count.subtract(1, ordering: .relaxed)
            if case .established = outcome { accept(connection) }
        }
    }

    private func loopsInUse(_ connections: [TCPConnection]) -> [EventLoop] {
        var seen: [ObjectIdentifier: EventLoop] = [:]
        for c in connections { seen[ObjectIdentifier(c.loop)] = c.loop }
        return Array(seen.values)
    }

    private func register(_ c: TCPConnection) -> Bool {
        registry.withLock { r in
            guard !r.isShutdown else { return false }
            r.connections[ObjectIdentifier(c)] = c
            return true
        }
    }

    private func unregister(_ c: TCPConnection) {
        _ = registry.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(c)) }
    }
}

/// Accepted connections of one listener still in their handshake.
final class PendingHandshakes: Sendable {
    let count = Atomic<Int>(0)
}
