import CLibUV
import Logging
import SpindleKernel
import Synchronization

/// A byte stream on an event loop: a TCP connection, a Unix-domain socket or a child's stdio pipe.
///
/// Reading is callback-based and happens on the loop thread: ``start(onRead:onClose:)`` hands
/// each chunk as it arrives (chunks split and merge frames arbitrarily; decode
/// incrementally). Writing is allowed from any thread; everything written during one loop turn
/// is gathered into one `uv_try_write`/`uv_write`, in order.
///
///     write() ─copy─► pending buffer (Mutex) ─► end of loop turn ─► uv_try_write ─► uv_write(rest)
///                                                                   │
///     isWritable / waitUntilWritable ◄── queued bytes vs watermarks ◄┘ (write callback)
///
/// Closing: ``close()`` stops reading, flushes what was written before it and then closes the
/// handle; `onClose` runs exactly once, with nil for a clean end (local close or peer EOF) and
/// the error otherwise. Writes made after `close()` or after the channel closed are dropped;
/// the reason was reported through `onClose`. A graceful close whose writes have not reached
/// the kernel by the configured `closeDeadline` closes hard (ECLOSEDEADLINE).
///
/// TCP channels get the configuration's keepalive and `TCP_USER_TIMEOUT` as soon as they are
/// connected or accepted, so a peer that vanished ends the channel with ETIMEDOUT.
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
        /// Bytes written and not yet flushed, contiguous; becomes the next uv_write's buffer.
        var pending: ByteBuffer?
        /// Empty buffers for reuse.
        var pool: [ByteBuffer] = []
        /// Pending plus handed to libuv but not yet written.
        var queuedBytes = 0
        var writable = true
        var flushScheduled = false
        /// Set when closing: further writes are dropped.
        var refusesWrites = false
        var closedError: EventLoopError? = nil
        var waiters: [CheckedContinuation<Result<Void, EventLoopError>, Never>] = []
        /// Producers to call before the next flush takes the pending buffer (`requestPull`).
        var pulls: [@Sendable () -> Void] = []

        /// Appends to the pending buffer (taken from the pool or created).
        @inline(__always)
        mutating func append(_ bytes: UnsafeRawBufferPointer) {
            if pending == nil {
                var b = pool.popLast() ?? ByteBuffer(capacity: max(bytes.count, 16 << 10))
                b.count = 0
                pending = b
            }
            pending!.append(bytes)
        }

        /// Frees every buffer held and forgets the pulls not run.
        mutating func discard() {
            pending?.free()
            pending = nil
            for b in pool { b.free() }
            pool = []
            pulls = []
        }

        /// Counts `n` newly pending bytes; returns true when the caller must schedule a flush.
        mutating func enqueued(_ n: Int, high: Int, flag: borrowing Atomic<Bool>) -> Bool {
            queuedBytes += n
            if queuedBytes > high && writable {
                writable = false
                flag.store(false, ordering: .relaxed)
            }
            if flushScheduled { return false }
            flushScheduled = true
            return true
        }
    }
    private let output = Mutex(Output())
    /// Mirrors `Output.writable` for a lock-free `isWritable`.
    private let writableFlag = Atomic<Bool>(true)

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
    /// Rewrites flushed bytes before they reach the socket (a record layer), once installed.
    private var outboundTransform: (any StreamOutboundTransform)?
    private var closeDeadlineTimer: LoopTimer?

    private static let logger = Logger(label: "spindle.eventloop.stream")

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
    /// - Throws: `EventLoopError` when a TCP socket option cannot be set; the caller closes
    ///   the channel.
    func didConnect() throws(EventLoopError) {
        switch kind {
        case .tcp:
            let tcp = raw.assumingMemoryBound(to: uv_tcp_t.self)
            localAddress = SocketAddress.tcpAddress(tcp, peer: false)
            remoteAddress = SocketAddress.tcpAddress(tcp, peer: true)
        case .pipe:
            let pipe = raw.assumingMemoryBound(to: uv_pipe_t.self)
            localAddress = SocketAddress.pipeAddress(pipe, peer: false)
            remoteAddress = SocketAddress.pipeAddress(pipe, peer: true)
        }
        if let remote = remoteAddress { label = remote.description }
        else if let local = localAddress { label = "\(local) (accepted)" }
        if kind == .tcp { try applyTCPOptions() }
    }

    /// TCP_NODELAY, keepalive and TCP_USER_TIMEOUT from the configuration (loop thread).
    private func applyTCPOptions() throws(EventLoopError) {
        let tcp = raw.assumingMemoryBound(to: uv_tcp_t.self)
        if configuration.noDelay {
            try EventLoopError.check(uv_tcp_nodelay(tcp, 1), "set TCP_NODELAY on \(label)")
        }
        guard configuration.keepalive != nil || configuration.userTimeout != nil else { return }
        guard let fd = fileDescriptor else {
            throw EventLoopError(code: UV_EBADF.rawValue, name: "EBADF", operation: "set socket options on \(label)",
                                 message: "the socket has no file descriptor")
        }
        func set(_ level: Int32, _ option: Int32, _ value: Int32, _ name: String) throws(EventLoopError) {
            try EventLoopError.check(spindle_setsockopt_int(fd, level, option, value), "set \(name)=\(value) on \(label)")
        }
        if let keepalive = configuration.keepalive {
            let v = keepalive.socketValues
            try set(SPINDLE_SOL_SOCKET, SPINDLE_SO_KEEPALIVE, 1, "SO_KEEPALIVE")
            try set(SPINDLE_IPPROTO_TCP, SPINDLE_TCP_KEEPIDLE, v.idle, "TCP_KEEPIDLE")
            try set(SPINDLE_IPPROTO_TCP, SPINDLE_TCP_KEEPINTVL, v.interval, "TCP_KEEPINTVL")
            try set(SPINDLE_IPPROTO_TCP, SPINDLE_TCP_KEEPCNT, v.count, "TCP_KEEPCNT")
        }
        if let ms = configuration.userTimeoutMilliseconds {
            try set(SPINDLE_IPPROTO_TCP, SPINDLE_TCP_USER_TIMEOUT, ms, "TCP_USER_TIMEOUT")
        }
    }

    /// The socket or pipe's file descriptor while the handle is open (loop thread); nil once
    /// it is closing. For reading socket options; the channel keeps owning the descriptor.
    package var fileDescriptor: Int32? {
        guard !handleClosing else { return nil }
        var fd = uv_os_fd_t()
        return uv_fileno(handle, &fd) == 0 ? fd : nil
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
    ///
    /// The bytes are copied into the channel's pending buffer, so the array may be reused at once.
    public func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let schedule = bytes.withUnsafeBytes { raw in
            output.withLock { o -> Bool in
                guard !o.refusesWrites else { return false }
                o.append(raw)
                return o.enqueued(raw.count, high: configuration.highWatermark, flag: writableFlag)
            }
        }
        if schedule { scheduleFlush() }
    }

    /// Queues raw bytes (copied before returning). Any thread.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        let schedule = output.withLock { o -> Bool in
            guard !o.refusesWrites else { return false }
            o.append(bytes)
            return o.enqueued(bytes.count, high: configuration.highWatermark, flag: writableFlag)
        }
        if schedule { scheduleFlush() }
    }

    /// Queues several chunks as one write, in order. Any thread.
    public func write(contentsOf chunks: [[UInt8]]) {
        let total = chunks.reduce(0) { $0 + $1.count }
        guard total > 0 else { return }
        let schedule = output.withLock { o -> Bool in
            guard !o.refusesWrites else { return false }
            for chunk in chunks { chunk.withUnsafeBytes { o.append($0) } }
            return o.enqueued(total, high: configuration.highWatermark, flag: writableFlag)
        }
        if schedule { scheduleFlush() }
    }

    /// Appends bytes produced in place by `fill`, without an intermediate copy. Any thread.
    ///
    /// `fill` runs under the channel's output lock with a `StreamChannelWriter` positioned at
    /// the end of the pending buffer; everything it appends goes out in order, in the same
    /// write as other bytes queued in this loop turn. Keep it short (it blocks other writers).
    /// - Returns: false, without calling `fill`, when the channel refuses writes (closing or
    ///   closed).
    package func writeInPlace(_ fill: (inout StreamChannelWriter) -> Void) -> Bool {
        let outcome = output.withLock { o -> Bool? in
            guard !o.refusesWrites else { return nil }
            if o.pending == nil {
                var b = o.pool.popLast() ?? ByteBuffer(capacity: 64 << 10)
                b.count = 0
                o.pending = b
            }
            var writer = StreamChannelWriter(buffer: o.pending.take()!)
            fill(&writer)
            let added = writer.added
            o.pending = writer.buffer
            guard added > 0 else { return false }
            return o.enqueued(added, high: configuration.highWatermark, flag: writableFlag)
        }
        guard let schedule = outcome else { return false }
        if schedule { scheduleFlush() }
        return true
    }

    /// Calls `pull` once on the loop thread at the end of this loop turn (or the next, when
    /// asked from another thread), right before the channel takes its pending bytes to write:
    /// what `pull` writes (with `writeInPlace`) goes out in that same write. For producers
    /// that accumulate output of their own and hand it over in one piece per turn.
    /// - Returns: false, and `pull` never runs, when the channel refuses writes (closing or closed).
    package func requestPull(_ pull: @escaping @Sendable () -> Void) -> Bool {
        let schedule = output.withLock { o -> Bool? in
            guard !o.refusesWrites else { return nil }
            o.pulls.append(pull)
            if o.flushScheduled { return false }
            o.flushScheduled = true
            return true
        }
        guard let schedule else { return false }
        return !schedule || scheduleFlush()
    }

    /// Runs the pulls requested so far (loop thread, before a flush takes the pending bytes).
    private func runPulls() {
        var pulls: [@Sendable () -> Void] = []
        output.withLock { o in swap(&pulls, &o.pulls) }
        for pull in pulls { pull() }
    }

    /// Asks the loop for a flush at the end of its turn.
    /// - Returns: false when the loop is gone (its shutdown closed this channel and reported
    ///   it via onClose): what is pending, pulls included, is discarded.
    @discardableResult
    private func scheduleFlush() -> Bool {
        if loop.inEventLoop {
            loop.scheduleFlush(self)
        } else if !loop.requestFlush(self) {
            output.withLock { o in o.discard() }
            return false
        }
        return true
    }

    /// False while more than the high watermark of bytes is queued (until it drains to the low one).
    public var isWritable: Bool { writableFlag.load(ordering: .relaxed) }

    /// Bytes written but not yet taken by the kernel.
    public var queuedByteCount: Int { output.withLock { $0.queuedBytes } }

    /// Returns once the channel is writable (at once if it is).
    /// - Throws: `EventLoopError` (EPIPE, or the close reason) when the channel closes first.
    public func waitUntilWritable() async throws(EventLoopError) {
        // Fast path without suspending: a continuation resumed at once still re-enqueues the
        // task on the executor, which costs a thread hop per call for a bulk sender.
        let now: Result<Void, EventLoopError>? = output.withLock { o in
            if let error = o.closedError { return .failure(error) }
            return o.writable ? .success(()) : nil
        }
        if let now { return try now.get() }
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
        runPulls()
        // A large flush means a producer is streaming: stay scheduled and look again next loop
        // turn (the loop polls without blocking meanwhile), so producers on other threads do
        // not pay an eventfd write and this thread a wake-up per batch. The first turn that
        // finds nothing pending ends it.
        var stayScheduled = false
        let taken = output.withLock { o -> ByteBuffer? in
            // A pull requested since `runPulls` found the flush scheduled: keep it scheduled.
            stayScheduled = !o.pulls.isEmpty
            guard let p = o.pending, p.count > 0 else {
                if !stayScheduled { o.flushScheduled = false }
                return nil
            }
            o.pending = nil
            if p.count >= Self.streamingFlushBytes { stayScheduled = true }
            if !stayScheduled { o.flushScheduled = false }
            return p
        }
        if stayScheduled { loop.scheduleFlush(self) }
        guard var buffer = taken else { return }
        guard buffer.count > 0 else { return recycle(buffer) }
        if let transform = outboundTransform {
            guard let transformed = apply(transform, to: buffer) else { return }
            buffer = transformed
        }
        var offset = 0
        if inFlight == 0 {
            // Nothing queued in libuv, so trying first keeps the order.
            let n = tryWrite(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
            if n < 0 {
                recycle(buffer)
                return closeNow(writeError(n, buffer.count))
            }
            if n == buffer.count {
                recycle(buffer)
                return completed(n)
            }
            offset = n
            if n > 0 { completed(n) }
        }
        let request = requestPool.popLast() ?? WriteRequest()
        request.buffer = buffer
        request.offset = offset
        submit(request)
    }

    /// Flushes at least this large keep the channel scheduled for the next loop turn.
    static let streamingFlushBytes = 16 << 10

    /// Makes every byte flushed from now on pass through `transform` (loop thread). Bytes
    /// written before the call are flushed as they are first, so a handshake written in the
    /// clear ahead of it stays in the clear. Queued-byte accounting and watermarks keep
    /// counting the bytes as written, before the transform.
    package func installOutboundTransform(_ transform: any StreamOutboundTransform) {
        loop.assertInLoop("install an outbound transform")
        flushPending()
        outboundTransform = transform
    }

    /// Runs `transform` over a flushed buffer; returns the buffer to write instead (the input
    /// is recycled), or nil after closing the channel when the transform fails.
    private func apply(_ transform: any StreamOutboundTransform, to input: ByteBuffer) -> ByteBuffer? {
        let bound = transform.maximumOutputSize(forInputCount: input.count)
        var sealed = output.withLock { o -> ByteBuffer? in o.pool.popLast() } ?? ByteBuffer(capacity: bound)
        sealed.count = 0
        sealed.reserve(bound)
        let written: Int
        do {
            written = try transform.transform(UnsafeRawBufferPointer(start: input.base, count: input.count),
                                              into: sealed.base)
        } catch {
            recycle(input)
            recycle(sealed)
            closeNow(EventLoopError(code: 0, name: "ETRANSFORM", operation: "write to \(label)", message: error.description))
            return nil
        }
        precondition(written >= 0 && written <= bound, "StreamOutboundTransform wrote \(written) of at most \(bound) bytes")
        sealed.count = written
        // The watermarks count the bytes as written; the difference is accounted for here so
        // that `completed` (which sees the transformed sizes) balances.
        let growth = written - input.count
        if growth != 0 { output.withLock { $0.queuedBytes += growth } }
        recycle(input)
        return sealed
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

    /// Returns a written buffer to the producers' pool (or frees it).
    private func recycle(_ buffer: ByteBuffer) {
        guard buffer.capacity <= 4 << 20, !handleClosing else { return buffer.free() }
        let kept = output.withLock { o -> Bool in
            guard o.pool.count < 4 else { return false }
            o.pool.append(buffer)
            return true
        }
        if !kept { buffer.free() }
    }

    /// Returns a finished request and its buffer for reuse.
    private func recycle(_ request: WriteRequest) {
        request.channel = nil
        if let buffer = request.buffer {
            request.buffer = nil
            recycle(buffer)
        }
        if requestPool.count < 4 && !handleClosing { requestPool.append(request) }
    }

    private func submit(_ request: WriteRequest) {
        request.channel = self
        request.request.pointee.data = Unmanaged.passRetained(request).toOpaque()
        var buf = uv_buf_init((request.buffer!.base + request.offset).assumingMemoryBound(to: CChar.self),
                              UInt32(request.remaining))
        let status = uv_write(request.request, stream, &buf, 1) { req, status in
            guard let req else { return }
            let request = Unmanaged<WriteRequest>.fromOpaque(req.pointee.data!).takeRetainedValue()
            request.channel?.writeFinished(request, status: status)
        }
        if status < 0 {
            Unmanaged<WriteRequest>.fromOpaque(request.request.pointee.data!).release()
            let bytes = request.remaining
            recycle(request)
            closeNow(writeError(Int(status), bytes))
            return
        }
        inFlight += 1
    }

    private func writeFinished(_ request: WriteRequest, status: Int32) {
        inFlight -= 1
        let bytes = request.remaining
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
            writableFlag.store(true, ordering: .relaxed)
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
        if !handleClosing && inFlight == 0 { return closeNow(nil) }
        if !handleClosing, let deadline = configuration.closeDeadline {
            closeDeadlineTimer = loop.scheduleTimer(after: deadline) { [self] in closeDeadlinePassed(deadline) }
        }
    }

    /// The graceful close still has writes in flight at its deadline (loop thread): close hard.
    private func closeDeadlinePassed(_ deadline: Duration) {
        closeDeadlineTimer = nil
        guard !handleClosing, inFlight > 0 else { return }
        let unwritten = uv_stream_get_write_queue_size(stream)
        let error = EventLoopError(
            code: 0, name: EventLoopError.closeDeadlineName, operation: "close \(label)",
            message: "the close deadline of \(deadline) passed with \(unwritten) bytes unwritten; the stream was closed hard")
        StreamChannel.logger.warning("close deadline passed", metadata: [
            "stream": "\(label)", "unwritten": "\(unwritten)", "deadline": "\(deadline)",
        ])
        closeNow(error, hard: true)
    }

    /// Closes the handle now; writes not yet taken by the kernel are discarded (loop thread).
    /// `hard` resets a TCP connection (SO_LINGER 0) instead of letting the kernel send what it
    /// still holds.
    func closeNow(_ reason: EventLoopError?, hard: Bool = false) {
        guard !handleClosing else { return }
        handleClosing = true
        closeDeadlineTimer?.cancel()
        closeDeadlineTimer = nil
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
            o.discard()
            defer { o.waiters = [] }
            return o.waiters
        }
        for w in waiters { w.resume(returning: .failure(closed)) }
        let onClosed: uv_close_cb = { h in
            guard let h else { return }
            let channel = Unmanaged<StreamChannel>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            channel.handleDidClose()
        }
        if hard, kind == .tcp, uv_tcp_close_reset(raw.assumingMemoryBound(to: uv_tcp_t.self), onClosed) == 0 { return }
        uv_close(handle, onClosed)
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

/// Appends bytes to a channel's pending write buffer in place (see
/// `StreamChannel.writeInPlace`). Valid only inside that call.
package struct StreamChannelWriter {
    fileprivate var buffer: ByteBuffer
    fileprivate var added = 0

    fileprivate init(buffer: ByteBuffer) { self.buffer = buffer }

    /// Reserves `count` bytes at the end of the buffer and lets `body` write them; `body`
    /// must initialise all `count` bytes.
    @inline(__always)
    package mutating func append(byteCount count: Int, _ body: (UnsafeMutableRawPointer) -> Void) {
        buffer.reserve(count)
        body(buffer.base + buffer.count)
        buffer.count += count
        added += count
    }

    /// Reserves up to `maximum` bytes and lets `body` write some of them; `body` returns how
    /// many it initialised (at most `maximum`), and only those are queued.
    @inline(__always)
    package mutating func append(upTo maximum: Int, _ body: (UnsafeMutableRawPointer) -> Int) {
        buffer.reserve(maximum)
        let n = body(buffer.base + buffer.count)
        precondition(n >= 0 && n <= maximum, "StreamChannelWriter: wrote \(n) of at most \(maximum) bytes")
        buffer.count += n
        added += n
    }
}

/// Rewrites the bytes a `StreamChannel` writes, on its loop thread, just before they reach the
/// socket: the hook a record layer (encryption) plugs into. Installed with
/// `StreamChannel.installOutboundTransform`; called once per flush with everything written
/// since the last one, in order.
package protocol StreamOutboundTransform: AnyObject {
    /// The most bytes `transform` writes for `count` bytes of input.
    func maximumOutputSize(forInputCount count: Int) -> Int
    /// Writes the transformed form of `input` to `output` (which has room for
    /// `maximumOutputSize(forInputCount: input.count)` bytes) and returns how many it wrote.
    /// - Throws: when the bytes cannot be transformed; the channel then closes with the error.
    func transform(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(StreamTransformError) -> Int
}

/// Why a `StreamOutboundTransform` could not transform what a channel flushed.
package struct StreamTransformError: Error, Sendable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
