import Logging
import SpindleEventLoop
@_spi(SpindleTransportInternals) import SpindleKernel
import Synchronization

/// How a connection's handshake ended.
enum HandshakeOutcome: Sendable {
    case established
    /// The connection is closing with this reason.
    case failed(CloseReason)
}

/// One SpindleTCP connection: a `StreamChannel` running the handshake, then frames.
///
/// ```
///  send() (any thread) ──encode in place──▶ StreamChannel pending buffer ──end of loop turn──▶ uv_write
///  StreamChannel.onRead (loop) ──▶ TCPHandshake ──▶ FrameDecoder (in place) ──▶ handler / backlog
/// ```
///
/// Sends encode their frame straight into the channel's pending write buffer (one lock, no
/// intermediate copy); the loop writes everything queued in a turn with one
/// `uv_try_write`/`uv_write`, so a burst of sends costs one write and one wake-up. Reads are
/// decoded in place from the loop's read buffer: a view handler gets borrowed views with no
/// allocation per message, an owned handler gets one payload copy per envelope.
final class TCPConnection: TransportConnection, @unchecked Sendable {
    // @unchecked Sendable: the `var`s below the "loop-confined" mark are read and written only
    // on `loop`'s thread (channel callbacks run there; public entry points hop there with
    // `execute` unless already on it); cross-thread state lives in the `shared` Mutex.

    let loop: EventLoop
    let channel: StreamChannel
    let localAddress: Address
    let remoteAddress: Address
    private let maxFrameSize: Int
    private let configuration: TCPTransport.Configuration
    private let logger: Logger

    /// State shared with sending threads.
    private struct Shared {
        /// Why the connection is closing or closed; set once.
        var closeReason: CloseReason?
    }
    private let shared = Mutex(Shared())
    /// Set (after `closeReason`) once closing has begun: `send` checks it without the lock.
    private let closing = Atomic<Bool>(false)

    // MARK: loop-confined
    private var handshake: TCPHandshake?
    /// `handshake != nil`, as a flag: testing the optional would copy the struct per read.
    private var handshaking = false
    private var handshakeTimer: LoopTimer?
    private var onHandshakeDone: ((HandshakeOutcome) -> Void)?
    private var role: TCPHandshake.Role = .initiator
    /// Opens the peer's records once an encrypted session is established (nil in the clear).
    private var opener: RecordOpener?
    /// The only source node id the peer's envelopes may carry: announced in the handshake, or
    /// (when the peer announced none) fixed by the first envelope that carries one.
    private var boundSource: NodeID?
    /// An envelope claimed a source other than `boundSource`; set by the decode closures,
    /// which then stop, and turned into the close reason after the pass.
    private var forgedSource: NodeID?
    private var decoder: FrameDecoder
    private var handler: ConnectionHandler?
    private var started = false
    private var backlog: [Envelope] = []
    /// The envelopes of one read, for a batch handler (reused between reads).
    private var batch: [Envelope] = []
    /// The views of one read, for a view-batch handler (reused between reads).
    private var viewBatch: [EnvelopeView] = []
    private var backlogHead = 0
    /// Payload bytes held in `backlog`.
    private var backlogBytes = 0
    private var readingPaused = false
    /// Set on the loop when closing begins: stops delivery without taking the lock.
    private var closeStarted = false
    private var finalReason: CloseReason?
    private var closeDelivered = false
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    private var onFinished: (@Sendable (TCPConnection) -> Void)?

    /// The node id this side announces in its handshake.
    private let localNode: NodeID?

    /// The peer's node id as its handshake announced it (set once established; nil when it
    /// announced none).
    private let peerNodeBox = Mutex<NodeID?>(nil)
    /// Whether the session is encrypted (set once established).
    private let encryptedFlag = Atomic<Bool>(false)

    var peerNode: NodeID? { peerNodeBox.withLock { $0 } }

    /// True when every byte after the handshake travels in AEAD records.
    var isEncrypted: Bool { encryptedFlag.load(ordering: .acquiring) }

    /// The transport's count of refused peers (failed handshakes are counted there).
    private let refusals: RefusalLog
    private let metrics: TCPMetrics
    /// Whether this connection counts in `spindle_tcp_connections_open` (set once established).
    private let countedOpen = Atomic<Bool>(false)

    init(channel: StreamChannel, fallbackAddress: Address, configuration: TCPTransport.Configuration,
         localNode: NodeID?, refusals: RefusalLog, metrics: TCPMetrics) {
        self.localNode = localNode
        self.refusals = refusals
        self.metrics = metrics
        self.loop = channel.loop
        self.channel = channel
        self.localAddress = channel.localAddress ?? fallbackAddress
        self.remoteAddress = channel.remoteAddress ?? fallbackAddress
        self.configuration = configuration
        self.maxFrameSize = FrameEncoder(maxFrameSize: configuration.maxFrameSize).maxFrameSize
        self.decoder = FrameDecoder(maxFrameSize: configuration.maxFrameSize)
        var logger = configuration.logger
        logger[metadataKey: "peer"] = "\(remoteAddress)"
        logger[metadataKey: "local"] = "\(localAddress)"
        self.logger = logger
    }

    // MARK: TransportConnection

    func send(_ envelope: Envelope) throws(TransportError) {
        if closing.load(ordering: .acquiring) { throw .closed(recordedCloseReason ?? .closedLocally) }
        // Reserve the bound (payload + longest header) and encode once; the exact size is only
        // needed for envelopes near the limit.
        let bound = FrameEncoder.frameSizeBound(of: envelope)
        if bound > maxFrameSize {
            let size = FrameEncoder.frameSize(of: envelope)
            guard size <= maxFrameSize else { throw .frameTooLarge(size: size, limit: maxFrameSize) }
        }
        let queued = channel.writeInPlace { writer in
            writer.append(upTo: bound) { p in FrameEncoder.encodeUnchecked(envelope, to: p) }
        }
        // The channel refuses writes once it is closing; the handler's onClose says why.
        if !queued { throw .closed(recordedCloseReason ?? .closedByPeer) }
    }

    /// Queues the envelopes in order with one lock acquisition and at most one wake-up of the
    /// loop. All-or-nothing for size: when one envelope cannot be framed none is queued.
    func send(contentsOf envelopes: [Envelope]) throws(TransportError) {
        if closing.load(ordering: .acquiring) { throw .closed(recordedCloseReason ?? .closedLocally) }
        guard !envelopes.isEmpty else { return }
        // Elements are read through spans: iterating the array would copy (and retain and
        // release) every envelope.
        let es = envelopes.span
        var total = 0
        for i in es.indices {
            let bound = FrameEncoder.frameSizeBound(of: es[i])
            if bound > maxFrameSize {
                let size = FrameEncoder.frameSize(of: es[i])
                guard size <= maxFrameSize else { throw .frameTooLarge(size: size, limit: maxFrameSize) }
            }
            total += bound
        }
        let queued = channel.writeInPlace { writer in
            writer.append(upTo: total) { p in
                // A span's elements are borrowed in place (no copy, no retain per envelope).
                let es = envelopes.span
                var at = 0
                for i in es.indices { at += FrameEncoder.encodeUnchecked(es[i], to: p + at) }
                return at
            }
        }
        if !queued { throw .closed(recordedCloseReason ?? .closedByPeer) }
    }

    /// Copies already-encoded frames to the pending write buffer as they are (one lock, one
    /// copy), after walking their length prefixes: bytes that are not whole frames within the
    /// limit are refused and nothing is queued. Headers are not re-checked here; a frame with
    /// a malformed header makes the peer close the connection, which `onClose` reports.
    func send(encodedFrames frames: UnsafeRawBufferPointer) throws(TransportError) {
        if closing.load(ordering: .acquiring) { throw .closed(recordedCloseReason ?? .closedLocally) }
        guard let base = frames.baseAddress, !frames.isEmpty else { return }
        do {
            try FrameDecoder.validateWholeFrames(frames, maxFrameSize: maxFrameSize)
        } catch {
            throw error.encodedFramesError
        }
        let queued = channel.writeInPlace { writer in
            writer.append(byteCount: frames.count) { p in p.copyMemory(from: base, byteCount: frames.count) }
        }
        if !queued { throw .closed(recordedCloseReason ?? .closedByPeer) }
    }

    /// Sends only queue bytes; handlers run on the loop thread, never inside `send`.
    var deliversDuringSend: Bool { false }

    /// Pulls run on the loop thread at the end of the turn, before the stream's write.
    var supportsWritePulls: Bool { true }

    func requestWritePull(_ pull: @escaping @Sendable () -> Void) -> Bool {
        if closing.load(ordering: .acquiring) { return false }
        return channel.requestPull(pull)
    }

    /// The transport's configured `maxFrameSize` (clamped as the codec clamps it).
    var maximumFrameSize: Int { maxFrameSize }

    /// Bytes accepted by `send` and not yet taken by the socket (outbound buffer plus the
    /// stream's write queue).
    var queuedByteCount: Int { channel.queuedByteCount }

    /// False above the channel's high watermark, until it drains below the low one.
    var isWritable: Bool { channel.isWritable }

    /// The recorded close reason, if closing has begun.
    private var recordedCloseReason: CloseReason? { shared.withLock { $0.closeReason } }

    func waitUntilWritable() async throws(TransportError) {
        if closing.load(ordering: .acquiring) { throw .closed(recordedCloseReason ?? .closedLocally) }
        do {
            try await channel.waitUntilWritable()
        } catch {
            throw .closed(recordedCloseReason ?? .transportError(error.description))
        }
    }

    func start(_ handler: ConnectionHandler) {
        if loop.inEventLoop {
            install(handler)
        } else {
            let queued = loop.tryExecute { [self] in install(handler) }
            if !queued {
                // The loop has shut down (closing the channel): nothing more will arrive.
                handler.onClose(recordedCloseReason ?? .transportShutdown)
            }
        }
    }

    func close() {
        close(reason: .closedLocally)
    }

    // MARK: lifecycle (used by TCPTransport)

    /// Starts reading and the handshake; `done` runs on the loop when the handshake ends.
    /// `finished` runs on the loop once the channel has closed. Call on the loop thread.
    func begin(role: TCPHandshake.Role,
               finished: @escaping @Sendable (TCPConnection) -> Void,
               done: @escaping (HandshakeOutcome) -> Void) {
        loop.assertInLoop("TCPConnection.begin")
        self.role = role
        onFinished = finished
        onHandshakeDone = done
        let now = configuration.clock.now()
        var hs = TCPHandshake(role: role, key: configuration.clusterKey, localNode: localNode,
                              now: now, timeout: configuration.handshakeTimeout)
        let first = hs.start()
        handshake = hs
        handshaking = true
        channel.start(
            onRead: { [self] bytes in handleRead(bytes) },
            onClose: { [self] error in handleChannelClosed(error) })
        apply(first)
        armHandshakeTimer(after: configuration.handshakeTimeout)
    }

    /// Closes with `reason` unless a reason is already recorded. Any thread.
    /// - Returns: the reason the connection closes with (the first one recorded).
    @discardableResult
    func close(reason: CloseReason) -> CloseReason {
        let (first, effective) = recordClose(reason: reason)
        if first { closeChannel() }
        return effective
    }

    /// Records `reason` as the close reason unless one is recorded already, without closing
    /// anything yet (a transport shutting down records it on every connection first, so a
    /// connection whose peer on the same transport closes first still reports the shutdown).
    /// - Returns: whether this call recorded it, and the reason in force.
    func recordClose(reason: CloseReason) -> (first: Bool, effective: CloseReason) {
        let result = shared.withLock { s -> (Bool, CloseReason) in
            if let earlier = s.closeReason { return (false, earlier) }
            s.closeReason = reason
            return (true, reason)
        }
        if result.0 { closing.store(true, ordering: .releasing) }
        return result
    }

    /// Closes the channel (after `recordClose` recorded a reason). Any thread.
    func closeChannel() {
        // Frames sent before this point are in the channel's pending buffer: closing the
        // channel flushes them before it closes the socket. (A reliable link's frames not yet
        // pulled stay in the link, which retransmits them on its next connection.)
        if loop.inEventLoop {
            closeStarted = true
            channel.close()
        } else {
            loop.execute { [self] in
                closeStarted = true
                channel.close()
            }
        }
    }

    /// Returns once the channel has closed and `onClose` has been decided.
    func waitUntilClosed() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let queued = loop.tryExecute { [self] in
                if finalReason != nil { c.resume() } else { closeWaiters.append(c) }
            }
            if !queued { c.resume() }   // the loop has shut down, which closed the channel
        }
    }

    /// Payload bytes buffered before `start` (for tests; read on the loop).
    func bufferedBytesBeforeStart() async -> Int {
        (try? await loop.submit { [self] in backlogBytes }) ?? 0
    }

    // MARK: loop-side internals

    private func handleRead(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop("a TCP connection's read")
        guard finalReason == nil, !closeStarted else { return }
        metrics.bytesReceived.increment(by: Int64(bytes.count))
        if handshaking {
            guard var hs = handshake else { return }
            let actions = hs.receive(bytes)
            handshake = hs
            apply(actions)
            return
        }
        if let opener {
            open(bytes, with: opener)
        } else {
            decodeAndDeliver(bytes)
        }
    }

    /// Opens the records in `bytes` and decodes their plaintext; a bad record closes the
    /// connection with a protocol violation naming the peer and the record's stream offset.
    private func open(_ bytes: UnsafeRawBufferPointer, with opener: RecordOpener) {
        do {
            try opener.open(bytes) { plaintext in
                decodeAndDeliver(plaintext)
                return !closeStarted
            }
        } catch {
            guard !closeStarted else { return }
            let text = "\(remoteAddress): \(error)"
            metrics.protocolViolations.increment()
            logger.warning("closing connection: bad record", metadata: ["error": "\(text)"])
            close(reason: .protocolViolation(text))
        }
    }

    /// Decodes `bytes` (after any partial frame kept from earlier reads) in place and delivers
    /// every complete envelope: as a borrowed view to a view handler, as an owned envelope to
    /// any other handler, into the backlog before `start`. Replies the handler sends are
    /// written at the end of this loop turn.
    private func decodeAndDeliver(_ bytes: UnsafeRawBufferPointer) {
        var input = bytes
        do {
            while true {
                // The handler is read once per pass, not per frame.
                let finished: Bool
                if let viewHandler = handler?.onEnvelopeView {
                    finished = try decode(input, deliver: viewHandler)
                } else if let viewsHandler = handler?.onEnvelopeViews {
                    finished = try decodeInBatches(input, reusing: &viewBatch, lendsViews: true,
                                                   element: { $0 }, deliver: viewsHandler)
                } else if let batchHandler = handler?.onEnvelopes {
                    finished = try decodeInBatches(input, reusing: &batch, lendsViews: false,
                                                   element: { $0.envelope }, deliver: batchHandler)
                } else if let ownedHandler = handler?.onEnvelope {
                    finished = try decode(input) { view in ownedHandler(view.envelope) }
                } else {
                    finished = try decoder.decode(input) { view in
                        if let installed = handler {
                            // `start` ran from inside a handler call on this loop: deliver this
                            // one to it, then start a new pass that reads the handler again.
                            if let v = installed.onEnvelopeView { v(view) } else { installed.onEnvelope(view.envelope) }
                            return false
                        }
                        guard admitsSource(view.source) else { return false }
                        backlog.append(view.envelope)
                        backlogBytes += view.payload.count
                        if (backlog.count - backlogHead >= configuration.maxBufferedBeforeStart
                            || backlogBytes >= configuration.maxBufferedBytesBeforeStart) && !readingPaused {
                            readingPaused = true
                            channel.pauseReading()
                        }
                        return !closeStarted
                    }
                }
                if forgedSource != nil { return refuseForgedSource() }
                if finished || closeStarted { return }
                input = UnsafeRawBufferPointer(start: nil, count: 0)
            }
        } catch {
            let text = "\(remoteAddress): \(error) (offsets count from the first frame byte after the handshake)"
            metrics.protocolViolations.increment()
            logger.warning("closing connection: protocol violation", metadata: ["error": "\(text)"])
            close(reason: .protocolViolation(text))
        }
    }

    /// Decodes `input` in place, handing every frame to `deliver` until closing starts.
    /// (`deliver` is a non-escaping parameter, so calling it per frame costs no reference
    /// counting; `closeStarted` is also set whenever `finalReason` is.)
    private func decode(_ input: UnsafeRawBufferPointer, deliver: (EnvelopeView) -> Void) throws(FrameError) -> Bool {
        try decoder.decode(input) { view in
            guard admitsSource(view.source) else { return false }
            deliver(view)
            return !closeStarted
        }
    }

    /// Checks an envelope's claimed source against the one the connection is bound to (and
    /// binds it when none is yet); records a forgery and returns false otherwise.
    @inline(__always)
    private func admitsSource(_ source: NodeID?) -> Bool {
        guard let source else { return true }
        if let bound = boundSource {
            if bound == source { return true }
            forgedSource = source
            return false
        }
        boundSource = source
        return true
    }

    /// Closes the connection for an envelope that claimed a forged source (after a decode pass
    /// stopped at it).
    private func refuseForgedSource() {
        guard let claimed = forgedSource, let bound = boundSource else { return }
        forgedSource = nil
        let reason = CloseReason.forgedSource(claimed: claimed, bound: bound, peer: remoteAddress.description)
        logger.warning("closing connection: forged source", metadata: ["error": "\(reason)"])
        close(reason: reason)
    }

    /// Decodes `input` in place and hands what `element` makes of each frame to `deliver` in
    /// batches: everything one read holds, in one call. `buffer` is reused between reads
    /// (unless a handler kept it). With `lendsViews` the elements borrow the frames' bytes: a
    /// frame completed from bytes the decoder kept from an earlier read points into the
    /// decoder's own buffer, which the next frame reuses, so it goes alone, at once (after the
    /// elements collected before it).
    private func decodeInBatches<Element>(_ input: UnsafeRawBufferPointer, reusing buffer: inout [Element],
                                          lendsViews: Bool, element: (EnvelopeView) -> Element,
                                          deliver: ([Element]) -> Void) throws(FrameError) -> Bool {
        defer { buffer.removeAll(keepingCapacity: true) }
        let lower = UInt(bitPattern: input.baseAddress)
        let upper = lower + UInt(input.count)
        let finished: Bool
        do {
            finished = try decode(input) { view in
                let at = UInt(bitPattern: view.payload.baseAddress)
                let inRead = view.payload.isEmpty || (at >= lower && at + UInt(view.payload.count) <= upper)
                if lendsViews && !inRead {
                    if !buffer.isEmpty {
                        deliver(buffer)
                        buffer.removeAll(keepingCapacity: true)
                    }
                    deliver([element(view)])
                    return
                }
                buffer.append(element(view))
            }
        } catch {
            if !buffer.isEmpty { deliver(buffer) }
            throw error
        }
        if !buffer.isEmpty { deliver(buffer) }
        return finished
    }

    private func apply(_ actions: [TCPHandshake.Action]) {
        for action in actions {
            switch action {
            case .send(let bytes):
                channel.write(bytes)
            case .established(let session):
                handshake = nil
                handshaking = false
                handshakeTimer?.cancel()
                handshakeTimer = nil
                boundSource = session.peerNode
                peerNodeBox.withLock { $0 = session.peerNode }
                if let send = session.send, let receive = session.receive {
                    opener = RecordOpener(cipher: receive, streamOffset: session.leftoverOffset)
                    channel.installOutboundTransform(RecordSealer(cipher: send))
                    encryptedFlag.store(true, ordering: .releasing)
                }
                metrics.established(acceptor: role == .acceptor, encrypted: session.isEncrypted)
                metrics.open.increment()
                countedOpen.store(true, ordering: .relaxed)
                logger.debug("handshake complete", metadata: [
                    "encrypted": "\(session.isEncrypted)", "peerNode": "\(session.peerNode.map { "\($0)" } ?? "none")"])
                let done = onHandshakeDone
                onHandshakeDone = nil
                done?(.established)
                if !session.leftover.isEmpty {
                    session.leftover.withUnsafeBytes { bytes in
                        if let opener { open(bytes, with: opener) } else { decodeAndDeliver(bytes) }
                    }
                }
            case .fail(let error):
                handshake = nil
                handshaking = false
                handshakeTimer?.cancel()
                handshakeTimer = nil
                let reason = Self.closeReason(for: error, role: role, peer: remoteAddress)
                let effective = close(reason: reason)
                if effective == reason {
                    if role == .acceptor {
                        refusals.record(peer: remoteAddress, reason: reason, logger: logger)
                    } else {
                        // `connect` throws it to the caller, who decides what to log.
                        logger.debug("handshake failed; disconnecting", metadata: ["error": "\(reason)"])
                    }
                    configuration.onHandshakeFailure?(remoteAddress, reason)
                }
                let done = onHandshakeDone
                onHandshakeDone = nil
                done?(.failed(effective))
            }
        }
    }

    /// The reason a connection closes for a failed handshake. Key mismatches read, on the
    /// connecting side, as the peer refusing authentication.
    static func closeReason(for error: TCPHandshakeError, role: TCPHandshake.Role, peer: Address) -> CloseReason {
        if error.isKeyMismatch && role == .initiator {
            return .authenticationFailed("\(peer) refused authentication: \(error)")
        }
        let text = "\(peer): \(error)"
        return error.isAuthenticationFailure ? .authenticationFailed(text) : .protocolViolation(text)
    }

    private func armHandshakeTimer(after delay: Duration) {
        handshakeTimer = loop.scheduleTimer(after: delay) { [self] in
            guard var hs = handshake else { return }
            let now = configuration.clock.now()
            let actions = hs.tick(now: now)
            handshake = hs
            if actions.isEmpty {
                // libuv timers run on the loop's cached time and may fire a little early.
                armHandshakeTimer(after: max(hs.expiresAt - now, .milliseconds(1)))
            } else {
                apply(actions)
            }
        }
    }

    private func install(_ newHandler: ConnectionHandler) {
        loop.assertInLoop("installing a TCP connection's handler")
        guard !started else { return }
        started = true
        handler = newHandler
        if let batchHandler = newHandler.onEnvelopes, backlogHead < backlog.count {
            let early = Array(backlog[backlogHead...])
            backlogHead = backlog.count
            batchHandler(early)
        }
        while backlogHead < backlog.count {
            let e = backlog[backlogHead]
            backlogHead += 1
            newHandler.onEnvelope(e)
        }
        backlog = []
        backlogHead = 0
        backlogBytes = 0
        if readingPaused {
            readingPaused = false
            if finalReason == nil { channel.resumeReading() }
        }
        deliverCloseIfReady()
    }

    private func handleChannelClosed(_ error: EventLoopError?) {
        loop.assertInLoop("a TCP connection's close")
        handshakeTimer?.cancel()
        handshakeTimer = nil
        if handshaking, var hs = handshake {
            // Closed mid-handshake: the handshake decides the reason (and tells `connect`).
            let actions = hs.peerClosed()
            handshake = hs
            apply(actions)
        }
        closeStarted = true
        // A stream that ends inside a record was cut (a truncation attack or a broken peer).
        let truncated = error == nil ? opener?.truncation : nil
        let recorded = shared.withLock { s -> CloseReason in
            if let current = s.closeReason { return current }
            let reason: CloseReason = error.map { .transportError($0.description) }
                ?? truncated.map { .protocolViolation("\(remoteAddress): \($0)") } ?? .closedByPeer
            s.closeReason = reason
            return reason
        }
        finalReason = recorded
        closing.store(true, ordering: .releasing)
        if countedOpen.exchange(false, ordering: .relaxed) { metrics.open.decrement() }
        deliverCloseIfReady()
        let waiters = closeWaiters
        closeWaiters = []
        for w in waiters { w.resume() }
        let finished = onFinished
        onFinished = nil
        finished?(self)
    }

    private func deliverCloseIfReady() {
        loop.assertInLoop("delivering a TCP connection's close")
        guard let reason = finalReason, let handler, !closeDelivered else { return }
        closeDelivered = true
        handler.onClose(reason)
    }
}
