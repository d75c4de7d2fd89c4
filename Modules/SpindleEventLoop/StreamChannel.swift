import CLibUV
import SpindleKernel
import Synchronization

/// A byte stream on an event loop: a TCP connection, a Unix-domain socket or a child's stdio pipe.
///
/// Reading is callback-based and happens on the loop thread: ``start(onRead:onClose:)`` hands
/// each chunk as it arrives (chunks split and merge frames arbitrarily; decode
/// incrementally). Writing is allowed from any thread; everything written during one loop turn
/// is gathered into one `uv_try_write`/`uv_write`, in order.
///
///     write() ─► pending (Mutex) ─► end of loop turn: gather ─► uv_try_write ─► uv_write(rest)
///                                                                   │
///     isWritable / waitUntilWritable ◄── queued bytes vs watermarks ◄┘ (write callback)
///
/// Closing: ``close()`` stops reading, flushes what was written before it and then closes the
/// handle; `onClose` runs exactly once, with nil for a clean end (local close or peer EOF) and
/// the error otherwise. Writes made after `close()` or after the channel closed are dropped;
/// the reason was reported through `onClose`.
public final class StreamChannel: LoopResource, @unchecked Sendable {
    // @unchecked Sendable: `output` is a Mutex; the addresses and label are written on the
    // loop thread before the channel is handed to any caller; every other `var` is touched
    // only on the loop thread.

    enum Kind { case tcp, pipe }

    public let loop: EventLoop
    public let configuration: StreamConfiguration
    let kind: Kind
    private let raw: UnsafeMutableRawPointer
    var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }
    private var handle: UnsafeMutablePointer<uv_handle_t> { raw.assumingMemoryBound(to: uv_handle_t.self) }

    /// This end's address (TCP and named Unix sockets); nil for pipes.
    public private(set) var localAddress: Address?
    /// The peer's address (TCP and named Unix sockets); nil for pipes.
    public private(set) var remoteAddress: Address?
    /// Names the stream in errors, e.g. `"tcp://127.0.0.1:5000"` or `"stdout of process 42"`.
    public private(set) var label: String

    private struct Output {
        var pending: [[UInt8]] = []
        var pendingBytes = 0
        /// Pending plus handed to libuv but not yet written.
        var queuedBytes = 0
        var writable = true
        var flushScheduled = false
        /// Set when closing: further writes are dropped.
        var refusesWrites = false
        var closedError: EventLoopError? = nil
        var waiters: [CheckedContinuation<Result<Void, EventLoopError>, Never>] = []

        /// Counts `n` newly pending bytes; returns true when the caller must schedule a flush.
        mutating func enqueued(_ n: Int, high: Int) -> Bool {
            queuedBytes += n
            if queuedBytes > high { writable = false }
            if flushScheduled { return false }
            flushScheduled = true
            return true
        }
    }
    private let output = Mutex(Output())

    // MARK: Loop-thread state
    private var onRead: (@Sendable (UnsafeRawBufferPointer) -> Void)?
    private var onClose: (@Sendable (EventLoopError?) -> Void)?
    private var started = false
    private var reading = false
    private var paused = false
    private var closingGracefully = false
    private var handleClosing = false
    private var handleClosed = false
    private var closeNotified = false
    private var closeReason: EventLoopError?
    private var inFlight = 0
    private var requestPool: [WriteRequest] = []
    private var batch: [[UInt8]] = []

    /// Allocates an uninitialised handle of `kind`.
    static func allocateHandle() -> UnsafeMutableRawPointer {
        .allocate(byteCount: max(MemoryLayout<uv_tcp_t>.size, MemoryLayout<uv_pipe_t>.size), alignment: 16)
    }

    /// Wraps an initialised handle (loop thread) and registers it with the loop.
    init(loop: EventLoop, kind: Kind, handle raw: UnsafeMutableRawPointer, label: String,
         configuration: StreamConfiguration) {
        loop.assertInLoop("create a stream")
        self.loop = loop
        self.kind = kind
        self.raw = raw
        self.label = label
        self.configuration = configuration
        raw.assumingMemoryBound(to: uv_handle_t.self).pointee.data = Unmanaged.passUnretained(self).toOpaque()
        loop.register(self)
    }

    /// Reads the socket addresses and applies socket options once connected (loop thread).
    func didConnect() {
        switch kind {
        case .tcp:
            let tcp = raw.assumingMemoryBound(to: uv_tcp_t.self)
            if configuration.noDelay { uv_tcp_nodelay(tcp, 1) }
            localAddress = SocketAddress.tcpAddress(tcp, peer: false)
            remoteAddress = SocketAddress.tcpAddress(tcp, peer: true)
        case .pipe:
            let pipe = raw.assumingMemoryBound(to: uv_pipe_t.self)
            localAddress = SocketAddress.pipeAddress(pipe, peer: false)
            remoteAddress = SocketAddress.pipeAddress(pipe, peer: true)
        }
        if let remote = remoteAddress { label = remote.description }
        else if let local = localAddress { label = "\(local) (accepted)" }
    }

    // MARK: Reading

    /// Starts reading; `onRead` gets each chunk, `onClose` is called exactly once.
    ///
    /// On a write-only stream (a child's stdin) only `onClose` is used: it reports write errors.
    /// The buffer passed to `onRead` is valid only during the call. Both closures run on the
    /// loop thread, serially. Calling `start` again has no effect. When the channel has
    /// already closed, `onClose` is called at once with the reason.
    public func start(onRead: @escaping @Sendable (UnsafeRawBufferPointer) -> Void,
                      onClose: @escaping @Sendable (EventLoopError?) -> Void) {
        loop.runOnLoop {
            guard !self.started else { return }
            self.started = true
            self.onRead = onRead
            self.onClose = onClose
            if self.handleClosed {
                self.notifyClose()
            } else if !self.handleClosing && !self.closingGracefully {
                self.startReading()
            }
        }
    }

    /// Stops reading until ``resumeReading()`` (backpressure for relays). Any thread.
    public func pauseReading() {
        loop.runOnLoop {
            self.paused = true
            if self.reading {
                uv_read_stop(self.stream)
                self.reading = false
            }
        }
    }

    /// Resumes reading after ``pauseReading()``. Any thread.
    public func resumeReading() {
        loop.runOnLoop {
            self.paused = false
            if self.started && !self.handleClosing && !self.closingGracefully { self.startReading() }
        }
    }

    private func startReading() {
        // A child's stdin is write-only: start() then only registers onClose.
        guard !reading, !paused, uv_is_readable(stream) != 0 else { return }
        let status = uv_read_start(stream, { h, _, buf in
            guard let h, let buf else { return }
            let channel = Unmanaged<StreamChannel>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            buf.pointee = uv_buf_init(channel.loop.readBuffer.assumingMemoryBound(to: CChar.self),
                                      UInt32(EventLoop.readBufferSize))
        }, { s, nread, buf in
            guard let s else { return }
            let channel = Unmanaged<StreamChannel>.fromOpaque(s.pointee.data!).takeUnretainedValue()
            if nread > 0 {
                channel.onRead?(UnsafeRawBufferPointer(start: buf?.pointee.base, count: nread))
            } else if nread == Int(UV_EOF.rawValue) {
                channel.reading = false
                channel.beginGracefulClose()
            } else if nread < 0 {
                channel.closeNow(EventLoopError(uvCode: Int32(nread), operation: "read from \(channel.label)"))
            }
            // nread == 0: EAGAIN, nothing to do.
        })
        if status < 0 {
            closeNow(EventLoopError(uvCode: status, operation: "start reading from \(label)"))
        } else {
            reading = true
        }
    }

    // MARK: Writing

    /// Queues `bytes` for writing. Any thread; writes from one thread keep their order.
    public func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let schedule = output.withLock { o -> Bool in
            guard !o.refusesWrites else { return false }
            o.pending.append(bytes)
            o.pendingBytes += bytes.count
            return o.enqueued(bytes.count, high: configuration.highWatermark)
        }
        if schedule { scheduleFlush() }
    }

    /// Queues several chunks as one write, in order. Any thread.
    public func write(contentsOf chunks: [[UInt8]]) {
        let schedule = output.withLock { o -> Bool in
            guard !o.refusesWrites else { return false }
            var n = 0
            for chunk in chunks where !chunk.isEmpty {
                o.pending.append(chunk)
                n += chunk.count
            }
            guard n > 0 else { return false }
            o.pendingBytes += n
            return o.enqueued(n, high: configuration.highWatermark)
        }
        if schedule { scheduleFlush() }
    }

    private func scheduleFlush() {
        if loop.inEventLoop {
            loop.scheduleFlush(self)
        } else if !loop.requestFlush(self) {
            // The loop is gone: its shutdown closed this channel and reported it via onClose.
            output.withLock { o in
                o.pending.removeAll()
                o.pendingBytes = 0
            }
        }
    }

    /// False while more than the high watermark of bytes is queued (until it drains to the low one).
    public var isWritable: Bool { output.withLock { $0.writable } }

    /// Bytes written but not yet taken by the kernel.
    public var queuedByteCount: Int { output.withLock { $0.queuedBytes } }

    /// Returns once the channel is writable (at once if it is).
    /// - Throws: `EventLoopError` (EPIPE, or the close reason) when the channel closes first.
    public func waitUntilWritable() async throws(EventLoopError) {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<Void, EventLoopError>, Never>) in
            let now: Result<Void, EventLoopError>? = output.withLock { o in
                if let error = o.closedError { return .failure(error) }
                if o.writable { return .success(()) }
                o.waiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
        try result.get()
    }

    /// Writes everything pending (loop thread, end of a loop turn).
    func flushPending() {
        guard !handleClosing else { return }
        let total = output.withLock { o -> Int in
            swap(&o.pending, &batch)
            o.flushScheduled = false
            defer { o.pendingBytes = 0 }
            return o.pendingBytes
        }
        guard total > 0 else { batch.removeAll(keepingCapacity: true); return }
        defer { batch.removeAll(keepingCapacity: true) }

        var written = 0
        if inFlight == 0 && batch.count == 1 {
            // Nothing queued in libuv, so trying first keeps the order; no copy if it all fits.
            written = batch[0].withUnsafeBytes { tryWrite($0) }
            if written < 0 { return closeNow(writeError(written, total)) }
            if written == total { return completed(total) }
        }
        let request = takeRequest(capacity: total - written)
        if batch.count == 1 {
            batch[0].withUnsafeBytes { request.append(UnsafeRawBufferPointer(rebasing: $0[written...])) }
        } else {
            for chunk in batch { chunk.withUnsafeBytes { request.append($0) } }
            if inFlight == 0 {
                let n = tryWrite(UnsafeRawBufferPointer(start: request.buffer, count: request.count))
                if n < 0 { recycle(request); return closeNow(writeError(n, total)) }
                if n == request.count { recycle(request); return completed(total) }
                request.offset = n
                written = n
            }
        }
        if written > 0 { completed(written) }
        submit(request)
    }

    private func writeError(_ status: Int, _ bytes: Int) -> EventLoopError {
        EventLoopError(uvCode: Int32(status), operation: "write \(bytes) bytes to \(label)")
    }

    /// `uv_try_write`: bytes written, 0 for EAGAIN, or a negative error.
    private func tryWrite(_ bytes: UnsafeRawBufferPointer) -> Int {
        var buf = uv_buf_init(UnsafeMutableRawPointer(mutating: bytes.baseAddress!).assumingMemoryBound(to: CChar.self),
                              UInt32(bytes.count))
        let n = Int(uv_try_write(stream, &buf, 1))
        return n == Int(UV_EAGAIN.rawValue) ? 0 : n
    }

    private func takeRequest(capacity: Int) -> WriteRequest {
        let request = requestPool.popLast() ?? WriteRequest(capacity: capacity)
        request.reserve(capacity)
        request.count = 0
        request.offset = 0
        return request
    }

    private func recycle(_ request: WriteRequest) {
        request.channel = nil
        if requestPool.count < 4 && request.capacity <= 4 << 20 && !handleClosing {
            requestPool.append(request)
        }
    }

    private func submit(_ request: WriteRequest) {
        request.channel = self
        request.request.pointee.data = Unmanaged.passRetained(request).toOpaque()
        var buf = uv_buf_init((request.buffer + request.offset).assumingMemoryBound(to: CChar.self),
                              UInt32(request.count - request.offset))
        let status = uv_write(request.request, stream, &buf, 1) { req, status in
            guard let req else { return }
            let request = Unmanaged<WriteRequest>.fromOpaque(req.pointee.data!).takeRetainedValue()
            request.channel?.writeFinished(request, status: status)
        }
        if status < 0 {
            Unmanaged<WriteRequest>.fromOpaque(request.request.pointee.data!).release()
            let bytes = request.count - request.offset
            recycle(request)
            closeNow(writeError(Int(status), bytes))
            return
        }
        inFlight += 1
    }

    private func writeFinished(_ request: WriteRequest, status: Int32) {
        inFlight -= 1
        let bytes = request.count - request.offset
        recycle(request)
        if status < 0 {
            closeNow(writeError(Int(status), bytes))
            return
        }
        completed(bytes)
        if closingGracefully && inFlight == 0 { closeNow(nil) }
    }

    /// Accounts for `bytes` taken by the kernel and wakes writers below the low watermark.
    private func completed(_ bytes: Int) {
        let waiters = output.withLock { o -> [CheckedContinuation<Result<Void, EventLoopError>, Never>] in
            o.queuedBytes -= bytes
            guard !o.writable, o.queuedBytes <= configuration.lowWatermark else { return [] }
            o.writable = true
            defer { o.waiters = [] }
            return o.waiters
        }
        for w in waiters { w.resume(returning: .success(())) }
    }

    // MARK: Closing

    /// Stops reading, flushes writes made so far, then closes. Idempotent, any thread.
    public func close() {
        loop.runOnLoop { self.beginGracefulClose() }
    }

    private func beginGracefulClose() {
        guard !handleClosing, !closingGracefully else { return }
        closingGracefully = true
        if reading {
            uv_read_stop(stream)
            reading = false
        }
        flushPending()
        output.withLock { $0.refusesWrites = true }
        if !handleClosing && inFlight == 0 { closeNow(nil) }
    }

    /// Closes the handle now; writes not yet taken by the kernel are discarded (loop thread).
    func closeNow(_ reason: EventLoopError?) {
        guard !handleClosing else { return }
        handleClosing = true
        if closeReason == nil { closeReason = reason }
        if reading {
            uv_read_stop(stream)
            reading = false
        }
        let closed = reason ?? EventLoopError(code: UV_EPIPE.rawValue, name: "EPIPE",
                                              operation: "write to \(label)", message: "the channel is closed")
        let waiters = output.withLock { o -> [CheckedContinuation<Result<Void, EventLoopError>, Never>] in
            o.refusesWrites = true
            o.closedError = closed
            o.pending.removeAll()
            o.pendingBytes = 0
            defer { o.waiters = [] }
            return o.waiters
        }
        for w in waiters { w.resume(returning: .failure(closed)) }
        uv_close(handle) { h in
            guard let h else { return }
            let channel = Unmanaged<StreamChannel>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            channel.handleDidClose()
        }
    }

    private func handleDidClose() {
        handleClosed = true
        raw.deallocate()
        requestPool.removeAll()
        output.withLock { $0.queuedBytes = 0 }
        if started { notifyClose() }
        loop.unregister(self)
    }

    private func notifyClose() {
        guard !closeNotified else { return }
        closeNotified = true
        let callback = onClose
        onRead = nil
        onClose = nil
        callback?(closeReason)
    }

    /// Closes at loop shutdown: writes still queued are reported as lost through `onClose`.
    func closeForShutdown() {
        let unwritten = output.withLock { $0.queuedBytes }
        let reason: EventLoopError? = unwritten > 0
            ? EventLoopError(code: 0, name: EventLoopError.loopShutDownName,
                             operation: "write to \(label)",
                             message: "event loop \"\(loop.name)\" shut down with \(unwritten) bytes unwritten")
            : nil
        closeNow(reason)
    }
}

extension StreamChannel {
    /// Closes a channel whose connect failed, without an `onClose` (loop thread).
    func abandon() {
        closeNow(nil)
    }
}
