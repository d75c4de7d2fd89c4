import Logging
import SpindleEventLoop
import SpindleKernel
import Synchronization

/// One SpindleTCP connection: a `StreamChannel` running the handshake, then frames.
///
/// ```
///  send() (any thread) ──encode──▶ outbound buffer ──flush (loop)──▶ StreamChannel.write
///  StreamChannel.onRead (loop) ──▶ TCPHandshake ──▶ FrameDecoder ──▶ handler / backlog
/// ```
///
/// Sends append their frame to one shared outbound buffer; the loop hands the whole buffer to
/// the channel as one write, at the end of the read callback that produced replies or in the
/// next loop turn for sends from other threads. So a burst of sends costs one `uv_write`.
final class TCPConnection: TransportConnection, @unchecked Sendable {
    // @unchecked Sendable: the `var`s below the "loop-confined" mark are read and written only
    // on `loop`'s thread (every entry point hops there or asserts it); cross-thread state lives
    // in the `shared` Mutex.

    let loop: EventLoop
    let channel: StreamChannel
    let localAddress: Address
    let remoteAddress: Address
    private let encoder: FrameEncoder
    private let configuration: TCPTransport.Configuration
    private let logger: Logger

    /// State shared with sending threads, under one lock (one acquisition per `send`).
    private struct Shared {
        /// Frames encoded by `send` and not yet handed to the channel.
        var bytes: [UInt8] = []
        var flushScheduled = false
        /// Why the connection is closing or closed; set once.
        var closeReason: CloseReason?
    }
    private let shared = Mutex(Shared())

    // MARK: loop-confined
    private var handshake: TCPHandshake?
    private var handshakeTimer: LoopTimer?
    private var onHandshakeDone: ((Result<Void, TCPHandshakeError>) -> Void)?
    private var decoder: FrameDecoder
    private var handler: ConnectionHandler?
    private var started = false
    private var backlog: [Envelope] = []
    private var backlogHead = 0
    private var readingPaused = false
    /// True while envelopes from one read are being delivered: replies sent by the handler
    /// are flushed once the read is done, without a loop hop.
    private var dispatching = false
    /// Set on the loop when closing begins: stops delivery without taking the lock.
    private var closeStarted = false
    private var finalReason: CloseReason?
    private var closeDelivered = false
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    private var onFinished: (@Sendable (TCPConnection) -> Void)?

    init(channel: StreamChannel, fallbackAddress: Address, configuration: TCPTransport.Configuration) {
        self.loop = channel.loop
        self.channel = channel
        self.localAddress = channel.localAddress ?? fallbackAddress
        self.remoteAddress = channel.remoteAddress ?? fallbackAddress
        self.configuration = configuration
        self.encoder = FrameEncoder(maxFrameSize: configuration.maxFrameSize)
        self.decoder = FrameDecoder(maxFrameSize: configuration.maxFrameSize)
        var logger = configuration.logger
        logger[metadataKey: "peer"] = "\(remoteAddress)"
        logger[metadataKey: "local"] = "\(localAddress)"
        self.logger = logger
    }

    // MARK: TransportConnection

    private enum SendOutcome {
        case queued, needsFlush, closed(CloseReason), unframeable(FrameError)
    }

    func send(_ envelope: Envelope) throws(TransportError) {
        let outcome = shared.withLock { s -> SendOutcome in
            if let reason = s.closeReason { return .closed(reason) }
            do throws(FrameError) {
                try encoder.encode(envelope, into: &s.bytes)
            } catch {
                return .unframeable(error)
            }
            if s.flushScheduled { return .queued }
            s.flushScheduled = true
            return .needsFlush
        }
        switch outcome {
        case .queued:
            return
        case .needsFlush:
            if loop.inEventLoop && dispatching { return }   // flushed when the read callback ends
            loop.execute { [self] in flushOutbound() }
        case .closed(let reason):
            throw .closed(reason)
        case .unframeable(let error):
            throw error.transportError
        }
    }

    /// The recorded close reason, if closing has begun.
    private var recordedCloseReason: CloseReason? { shared.withLock { $0.closeReason } }

    func waitUntilWritable() async throws(TransportError) {
        let (reason, pending) = shared.withLock { ($0.closeReason, $0.bytes.count) }
        if let reason { throw .closed(reason) }
        if pending >= configuration.highWatermark {
            // Hand what is buffered to the channel so its watermarks see it.
            do {
                try await loop.submit { [self] in flushOutbound() }
            } catch {
                throw .closed(recordedCloseReason ?? .transportShutdown)
            }
        }
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
            loop.execute { [self] in install(handler) }
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
               done: @escaping (Result<Void, TCPHandshakeError>) -> Void) {
        onFinished = finished
        onHandshakeDone = done
        let now = configuration.clock.now()
        let hs = TCPHandshake(role: role, key: configuration.clusterKey, nonce: TCPHandshake.randomNonce(),
                              now: now, timeout: configuration.handshakeTimeout)
        let first = hs.start()
        handshake = hs
        channel.start(
            onRead: { [self] bytes in handleRead(bytes) },
            onClose: { [self] error in handleChannelClosed(error) })
        apply(first)
        armHandshakeTimer(after: configuration.handshakeTimeout)
    }

    /// Closes with `reason` unless a reason is already recorded. Any thread.
    func close(reason: CloseReason) {
        let first = shared.withLock { s -> Bool in
            guard s.closeReason == nil else { return false }
            s.closeReason = reason
            return true
        }
        guard first else { return }
        if loop.inEventLoop {
            closeStarted = true
            flushOutbound()
            channel.close()
        } else {
            loop.execute { [self] in
                closeStarted = true
                flushOutbound()
                channel.close()
            }
        }
    }

    /// Returns once the channel has closed and `onClose` has been decided.
    func waitUntilClosed() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.execute { [self] in
                if finalReason != nil { c.resume() } else { closeWaiters.append(c) }
            }
        }
    }

    // MARK: loop-side internals

    private func flushOutbound() {
        let bytes = shared.withLock { s -> [UInt8] in
            s.flushScheduled = false
            guard !s.bytes.isEmpty else { return [] }
            let taken = s.bytes
            // The channel keeps `taken` until its write completes; start the next batch with
            // room for one like it, so encoding does not regrow (and copy) the buffer.
            s.bytes = []
            s.bytes.reserveCapacity(min(taken.count, 256 << 10))
            return taken
        }
        guard !bytes.isEmpty, finalReason == nil else { return }
        channel.write(bytes)
    }

    private func handleRead(_ bytes: UnsafeRawBufferPointer) {
        guard finalReason == nil, !closeStarted else { return }
        if handshake != nil {
            guard var hs = handshake else { return }
            let actions = hs.receive(bytes)
            handshake = hs
            apply(actions)
            return
        }
        decoder.feed(bytes)
        drainDecoder()
    }

    /// Delivers every complete envelope the decoder holds, then flushes replies.
    private func drainDecoder() {
        dispatching = true
        defer {
            dispatching = false
            flushOutbound()
        }
        var deliver = handler?.onEnvelope
        while finalReason == nil, !closeStarted {
            let envelope: Envelope?
            do {
                envelope = try decoder.next()
            } catch {
                let text = "\(remoteAddress): \(error) (offsets count from the first frame byte after the handshake)"
                logger.warning("closing connection: protocol violation", metadata: ["error": "\(text)"])
                close(reason: .protocolViolation(text))
                return
            }
            guard let envelope else { return }
            if deliver == nil { deliver = handler?.onEnvelope }
            if let deliver {
                deliver(envelope)
            } else {
                backlog.append(envelope)
                if backlog.count - backlogHead >= configuration.maxBufferedBeforeStart && !readingPaused {
                    readingPaused = true
                    channel.pauseReading()
                }
            }
        }
    }

    private func apply(_ actions: [TCPHandshake.Action]) {
        for action in actions {
            switch action {
            case .send(let bytes):
                channel.write(bytes)
            case .established(let authenticated, let leftover):
                handshake = nil
                handshakeTimer?.cancel()
                handshakeTimer = nil
                logger.debug("handshake complete", metadata: ["authenticated": "\(authenticated)"])
                let done = onHandshakeDone
                onHandshakeDone = nil
                done?(.success(()))
                if !leftover.isEmpty {
                    decoder.feed(leftover)
                    drainDecoder()
                }
            case .fail(let error):
                handshake = nil
                handshakeTimer?.cancel()
                handshakeTimer = nil
                let text = "\(remoteAddress): \(error)"
                let reason: CloseReason = error.isAuthenticationFailure
                    ? .authenticationFailed(text) : .protocolViolation(text)
                logger.warning("handshake failed; disconnecting", metadata: ["error": "\(text)"])
                close(reason: reason)
                configuration.onHandshakeFailure?(remoteAddress, reason)
                let done = onHandshakeDone
                onHandshakeDone = nil
                done?(.failure(error))
            }
        }
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
        guard !started else { return }
        started = true
        handler = newHandler
        while backlogHead < backlog.count {
            let e = backlog[backlogHead]
            backlogHead += 1
            newHandler.onEnvelope(e)
        }
        backlog = []
        backlogHead = 0
        if readingPaused {
            readingPaused = false
            if finalReason == nil { channel.resumeReading() }
        }
        deliverCloseIfReady()
    }

    private func handleChannelClosed(_ error: EventLoopError?) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        if var hs = handshake {
            // Closed mid-handshake: the handshake decides the reason (and tells `connect`).
            let actions = hs.peerClosed()
            handshake = hs
            apply(actions)
        }
        closeStarted = true
        let recorded = shared.withLock { s -> CloseReason in
            if let current = s.closeReason { return current }
            let reason: CloseReason = error.map { .transportError($0.description) } ?? .closedByPeer
            s.closeReason = reason
            return reason
        }
        finalReason = recorded
        deliverCloseIfReady()
        let waiters = closeWaiters
        closeWaiters = []
        for w in waiters { w.resume() }
        let finished = onFinished
        onFinished = nil
        finished?(self)
    }

    private func deliverCloseIfReady() {
        guard let reason = finalReason, let handler, !closeDelivered else { return }
        closeDelivered = true
        handler.onClose(reason)
    }
}
