/// Why a connection closed.
public enum CloseReason: Sendable, Equatable, CustomStringConvertible {
    /// This side called `close()`.
    case closedLocally
    /// The peer closed the connection (end of stream).
    case closedByPeer
    /// The peer sent bytes that are not valid frames; the text says what and at which offset.
    case protocolViolation(String)
    /// The peer failed the authenticated handshake.
    case authenticationFailed(String)
    /// The underlying socket, pipe or in-process channel failed (libuv error name and text).
    case transportError(String)
    /// The transport was shut down.
    case transportShutdown
    /// The peer sent an envelope claiming source `claimed` on a connection whose handshake
    /// (or first envelope) fixed its source as `bound`.
    case forgedSource(claimed: NodeID, bound: NodeID, peer: String)

    public var description: String {
        switch self {
        case .closedLocally: return "closed locally"
        case .closedByPeer: return "closed by peer"
        case .protocolViolation(let s): return "protocol violation: \(s)"
        case .authenticationFailed(let s): return "authentication failed: \(s)"
        case .transportError(let s): return "transport error: \(s)"
        case .transportShutdown: return "transport shut down"
        case .forgedSource(let claimed, let bound, let peer):
            return "forged source: \(peer) sent an envelope claiming source \(claimed) on a connection bound to \(bound)"
        }
    }
}

/// A failure of a transport operation.
public enum TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing listens at the address (or it refused the connection).
    case unreachable(Address, String)
    /// The address is in use or cannot be bound.
    case cannotListen(Address, String)
    /// The address's scheme is not served by this transport.
    case unsupportedAddress(Address, transport: String)
    /// The connection is closed; sends fail with the reason it closed.
    case closed(CloseReason)
    /// The envelope encodes to more bytes than the frame limit allows.
    case frameTooLarge(size: Int, limit: Int)
    /// An operation did not complete in time.
    case timedOut(String)
    /// Bytes handed to `send(encodedFrames:)` are not whole frames; the text says what is
    /// wrong at which offset.
    case invalidFrames(String)

    public var description: String {
        switch self {
        case .unreachable(let a, let why): return "cannot reach \(a): \(why)"
        case .cannotListen(let a, let why): return "cannot listen on \(a): \(why)"
        case .unsupportedAddress(let a, let t): return "\(t) transport does not serve \(a)"
        case .closed(let r): return "connection closed (\(r))"
        case .frameTooLarge(let size, let limit): return "frame of \(size) bytes exceeds the limit of \(limit)"
        case .timedOut(let what): return "timed out: \(what)"
        case .invalidFrames(let what): return "not whole frames: \(what)"
        }
    }
}

/// Receives what arrives on a connection. Calls to one handler never overlap and arrive in the
/// connection's FIFO order; they may run on any thread the transport chooses (for SpindleTCP,
/// the connection's event-loop thread), so keep them short.
///
/// Four forms:
/// - `init(onEnvelope:onClose:)` receives owned `Envelope`s one by one;
/// - `init(onEnvelopeView:onClose:)` receives borrowed `EnvelopeView`s, valid only during the
///   call. A transport that can deliver views without copying (SpindleTCP decodes them in
///   place from its read buffer, with no allocation per message) calls `onEnvelopeView`; any
///   other transport calls `onEnvelope`, which for a view handler lends the envelope's bytes;
/// - `init(onEnvelopes:onClose:)` receives owned envelopes in batches: everything one read
///   (SpindleTCP) or one drain (in-process) produced, in order, in one call, so a handler
///   with per-call costs (a lock, a state machine step) pays them once per batch. Transports
///   that do not batch call `onEnvelope`, which passes a one-element array;
/// - `init(onEnvelopes:onEnvelopeViews:onClose:)` adds to that a batch of borrowed views,
///   which a transport that decodes in place (SpindleTCP) calls instead: per-batch costs once,
///   and no allocation for envelopes the handler drops or only inspects.
public struct ConnectionHandler: Sendable {
    public var onEnvelope: @Sendable (Envelope) -> Void
    /// Set by `init(onEnvelopeView:onClose:)`: the zero-copy form of `onEnvelope` (which then
    /// forwards to it). Transports that can deliver borrowed views call this when it is set.
    public var onEnvelopeView: (@Sendable (EnvelopeView) -> Void)?
    /// Set by `init(onEnvelopes:onClose:)`: the batch form of `onEnvelope` (which then
    /// forwards to it). Transports that deliver in batches call this when it is set.
    public var onEnvelopes: (@Sendable ([Envelope]) -> Void)?
    /// Set by `init(onEnvelopes:onEnvelopeViews:onClose:)`: batches of borrowed views, valid
    /// only during the call. Transports that decode in place call this when it is set.
    public var onEnvelopeViews: (@Sendable ([EnvelopeView]) -> Void)?
    /// Called exactly once, after the last `onEnvelope`.
    public var onClose: @Sendable (CloseReason) -> Void

    public init(onEnvelope: @escaping @Sendable (Envelope) -> Void,
                onClose: @escaping @Sendable (CloseReason) -> Void) {
        self.onEnvelope = onEnvelope
        self.onEnvelopeView = nil
        self.onEnvelopes = nil
        self.onEnvelopeViews = nil
        self.onClose = onClose
    }

    /// A handler that receives envelopes in batches (never empty), in order; calls never
    /// overlap. The array may be kept.
    public init(onEnvelopes: @escaping @Sendable ([Envelope]) -> Void,
                onClose: @escaping @Sendable (CloseReason) -> Void) {
        self.onEnvelope = { envelope in onEnvelopes([envelope]) }
        self.onEnvelopeView = nil
        self.onEnvelopes = onEnvelopes
        self.onEnvelopeViews = nil
        self.onClose = onClose
    }

    /// A batch handler with a zero-copy form: a transport that decodes in place calls
    /// `onEnvelopeViews` with the views of one read (never empty, in order; the views and
    /// their payloads are valid only during the call: take `view.envelope` to keep one); any
    /// other transport calls `onEnvelopes` (or `onEnvelope`, which passes a one-element array).
    public init(onEnvelopes: @escaping @Sendable ([Envelope]) -> Void,
                onEnvelopeViews: @escaping @Sendable ([EnvelopeView]) -> Void,
                onClose: @escaping @Sendable (CloseReason) -> Void) {
        self.onEnvelope = { envelope in onEnvelopes([envelope]) }
        self.onEnvelopeView = nil
        self.onEnvelopes = onEnvelopes
        self.onEnvelopeViews = onEnvelopeViews
        self.onClose = onClose
    }

    /// A handler that receives borrowed views: no copy of the payload, no allocation per
    /// message on transports that decode in place. Do not keep the view or its payload
    /// pointer beyond the call; take `view.envelope` for an owned copy.
    public init(onEnvelopeView: @escaping @Sendable (EnvelopeView) -> Void,
                onClose: @escaping @Sendable (CloseReason) -> Void) {
        self.onEnvelope = { envelope in envelope.withView(onEnvelopeView) }
        self.onEnvelopeView = onEnvelopeView
        self.onEnvelopes = nil
        self.onEnvelopeViews = nil
        self.onClose = onClose
    }
}

/// One bidirectional, FIFO, envelope-carrying connection.
///
/// A third-party transport implements `send`, `start`, `close` and the properties it has an
/// answer for; the fast paths between a reliable link and SpindleTCP (`send(encodedFrames:)`,
/// `deliversDuringSend`, pulled writes) are SPI (`@_spi(SpindleTransportInternals)`) with
/// defaults that are correct for any transport.
public protocol TransportConnection: AnyObject, Sendable {
    /// This side's address.
    var localAddress: Address { get }
    /// The peer's address as this side knows it.
    var remoteAddress: Address { get }

    /// Queues an envelope for the peer without waiting. FIFO per connection.
    /// - Throws: `TransportError.closed` once the connection has closed,
    ///   `TransportError.frameTooLarge` when the envelope cannot be framed.
    func send(_ envelope: Envelope) throws(TransportError)

    /// Queues several envelopes for the peer, in order, without waiting. A transport may do
    /// this more cheaply than one `send` per envelope (SpindleTCP takes its write lock and
    /// wakes its loop once per batch). The default sends them one by one.
    /// - Throws: like `send`. When it throws, envelopes before the failing one may have been
    ///   queued (SpindleTCP checks every size first and queues none on `.frameTooLarge`).
    func send(contentsOf envelopes: [Envelope]) throws(TransportError)

    /// Queues frames that are already encoded (whole version-2 frames back to back, as
    /// `FrameEncoder` writes them), in order, without waiting. A byte-stream transport copies
    /// them to its stream as they are (SpindleTCP: one lock and one copy for the lot, no
    /// per-envelope work); the default decodes them and sends the envelopes. For senders that
    /// keep what they send encoded anyway, like a reliable link's retransmit log.
    ///
    /// - Throws: `TransportError.invalidFrames` when the bytes are not whole frames (nothing is
    ///   queued), `.frameTooLarge` when one exceeds the connection's limit, `.closed` once the
    ///   connection has closed.
    @_spi(SpindleTransportInternals)
    func send(encodedFrames frames: UnsafeRawBufferPointer) throws(TransportError)

    /// The largest frame (prefix, header and payload) this connection carries; a larger
    /// envelope is refused with `.frameTooLarge`. Senders that keep messages to send later (a
    /// reliable link) refuse larger ones up front. The default is
    /// `FrameLayout.largestFrameSize` (no limit of the transport's own); SpindleTCP reports
    /// its configured `maxFrameSize`.
    var maximumFrameSize: Int { get }

    /// True when a send may run a connection handler (of either end) before it returns, as
    /// the in-process transport's `.inline` delivery does. A caller that holds a lock which a
    /// handler might take must then send only after releasing it; when false, sends only
    /// queue and may be made under such a lock. The default is true (the safe answer for a
    /// transport that does not say); SpindleTCP's connections say false.
    @_spi(SpindleTransportInternals)
    var deliversDuringSend: Bool { get }

    /// True when `requestWritePull` is supported. The default is false; SpindleTCP's
    /// connections say true.
    @_spi(SpindleTransportInternals)
    var supportsWritePulls: Bool { get }

    /// Asks the connection to call `pull` once, on the thread that writes its stream, before
    /// that thread next writes (SpindleTCP: at the end of the loop turn, in the same write as
    /// everything else sent during the turn). In `pull` a sender that keeps its messages
    /// encoded (a reliable link) hands over everything accumulated since it asked, with one
    /// `send(encodedFrames:)`: it pays for the connection's write lock and wake-up once per
    /// pull instead of once per message. `pull` never runs inside this call.
    /// - Returns: false when `pull` will not run: the connection does not support pulls (the
    ///   default) or refuses writes (it is closing; its `onClose` says why).
    @_spi(SpindleTransportInternals)
    func requestWritePull(_ pull: @escaping @Sendable () -> Void) -> Bool

    /// Suspends while the connection's write queue is above its high watermark and returns when
    /// it has drained below the low watermark (backpressure for bulk senders).
    /// - Throws: `TransportError.closed` if the connection closes while waiting.
    func waitUntilWritable() async throws(TransportError)

    /// The node id the peer announced when the connection was set up (SpindleTCP's handshake),
    /// or nil when it announced none or the transport has no such notion. The default is nil.
    var peerNode: NodeID? { get }

    /// False while the connection's write queue is above its high watermark (until it drains
    /// to the low one): the non-suspending check for producers that run on the transport's
    /// own thread (an actor pinned to SpindleTCP's event loop) and cannot await. The default
    /// is true (a transport without a bounded write queue).
    var isWritable: Bool { get }

    /// Starts delivery to `handler`. Envelopes that arrived before are delivered first, in order.
    /// Call once; a second call replaces nothing and is ignored.
    func start(_ handler: ConnectionHandler)

    /// Closes the connection; the handler's `onClose` receives `.closedLocally`.
    func close()
}

/// A bound listener; `address` is the address actually bound (port 0 resolved).
public protocol TransportListener: AnyObject, Sendable {
    var address: Address { get }
    /// Stops accepting. Connections already accepted stay open.
    func close()
}

/// Moves envelopes between endpoints. Implementations: `InProcessTransport` (kernel, the
/// embedded default) and `TCPTransport` (Plugins/SpindleTCP).
public protocol Transport: AnyObject, Sendable {
    /// Listens on `address`; each accepted connection is handed to `accept` (not yet started:
    /// call `start` on it).
    func listen(on address: Address,
                accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener

    /// Connects to a listener.
    func connect(to address: Address) async throws(TransportError) -> any TransportConnection

    /// Closes every listener and connection of this transport; afterwards none of its threads,
    /// handles or sockets remain.
    func shutdown() async
}

extension TransportConnection {
    public var isWritable: Bool { true }

    public var peerNode: NodeID? { nil }

    @_spi(SpindleTransportInternals)
    public var deliversDuringSend: Bool { true }

    public var maximumFrameSize: Int { FrameLayout.largestFrameSize }

    @_spi(SpindleTransportInternals)
    public var supportsWritePulls: Bool { false }

    @_spi(SpindleTransportInternals)
    public func requestWritePull(_ pull: @escaping @Sendable () -> Void) -> Bool { false }

    public func send(contentsOf envelopes: [Envelope]) throws(TransportError) {
        for e in envelopes { try send(e) }
    }

    /// Decodes the frames and sends the envelopes with `send(contentsOf:)`.
    @_spi(SpindleTransportInternals)
    public func send(encodedFrames frames: UnsafeRawBufferPointer) throws(TransportError) {
        let envelopes: [Envelope]
        do {
            envelopes = try FrameDecoder.wholeFrames(frames)
        } catch {
            throw error.encodedFramesError
        }
        try send(contentsOf: envelopes)
    }

    /// The connection's envelopes as an async sequence that ends when the connection closes
    /// (normally for a local close or the peer's close, with an error otherwise). Starts the
    /// connection; use either this or `start(_:)`.
    public func envelopes() -> AsyncThrowingStream<Envelope, any Error> {
        let (stream, continuation) = AsyncThrowingStream<Envelope, any Error>.makeStream()
        start(ConnectionHandler(
            onEnvelope: { continuation.yield($0) },
            onClose: { reason in
                switch reason {
                case .closedLocally, .closedByPeer, .transportShutdown: continuation.finish()
                default: continuation.finish(throwing: TransportError.closed(reason))
                }
            }))
        return stream
    }
}
