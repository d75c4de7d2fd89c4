import CLibUV

/// Watches POSIX signals (SIGINT, SIGTERM, SIGHUP, …) on an event loop, for daemons.
///
/// While watched, the signal's default action is replaced by libuv's handler; the handler
/// closure runs on the loop thread with the signal number. ``cancel()`` (or loop shutdown)
/// stops watching and restores the default once no loop watches the signal.
public final class SignalWatcher: LoopResource, @unchecked Sendable {
    // @unchecked Sendable: `handles` and `handler` are touched only on the loop thread after
    // init, which also runs there.

    public let loop: EventLoop
    /// The watched signal numbers.
    public let signals: [Int32]
    private var handles: [UnsafeMutablePointer<uv_signal_t>] = []
    private var handler: (@Sendable (Int32) -> Void)?
    private var closing = 0

    private init(loop: EventLoop, signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        self.loop = loop
        self.signals = signals
        self.handler = handler
    }

    /// Starts watching `signals`; returns once the handlers are installed.
    /// - Throws: `EventLoopError` (EINVAL for an invalid signal number, EMFILE when libuv cannot
    ///   create its signal pipe) or `.loopShutDown`.
    public static func watch(on loop: EventLoop, signals: [Int32],
                             handler: @escaping @Sendable (Int32) -> Void) async throws(EventLoopError) -> SignalWatcher {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<SignalWatcher, EventLoopError>, Never>) in
            let accepted = loop.tryExecute {
                c.resume(returning: Result { () throws(EventLoopError) -> SignalWatcher in
                    try start(on: loop, signals: signals, handler: handler)
                })
            }
            if !accepted { c.resume(returning: .failure(.loopShutDown(loop.name, "watch signals \(signals)"))) }
        }
        return try result.get()
    }

    private static func start(on loop: EventLoop, signals: [Int32],
                              handler: @escaping @Sendable (Int32) -> Void) throws(EventLoopError) -> SignalWatcher {
        guard !loop.isClosing else { throw .loopShutDown(loop.name, "watch signals \(signals)") }
        let watcher = SignalWatcher(loop: loop, signals: signals, handler: handler)
        loop.register(watcher)
        for signal in signals {
            let h = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
            // Fails when libuv cannot create its signal pipe (EMFILE): the handle was never
            // initialised, so it is freed here rather than closed.
            let initStatus = uv_signal_init(loop.uvLoop, h)
            if initStatus < 0 {
                h.deallocate()
                watcher.closeHandles()
                if watcher.closing == 0 { loop.unregister(watcher) }
                throw EventLoopError(uvCode: initStatus, operation: "watch signal \(signal)")
            }
            h.pointee.data = Unmanaged.passUnretained(watcher).toOpaque()
            watcher.handles.append(h)
            let status = uv_signal_start(h, { h, signum in
                guard let h else { return }
                Unmanaged<SignalWatcher>.fromOpaque(h.pointee.data!).takeUnretainedValue().handler?(signum)
            }, signal)
            if status < 0 {
                watcher.closeHandles()
                throw EventLoopError(uvCode: status, operation: "watch signal \(signal)")
            }
        }
        if signals.isEmpty { loop.unregister(watcher) }
        return watcher
    }

    /// Stops watching. Idempotent, any thread.
    public func cancel() {
        loop.runOnLoop { self.closeHandles() }
    }

    private func closeHandles() {
        handler = nil
        let open = handles
        handles = []
        closing += open.count
        for h in open {
            uv_close(UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self)) { h in
                guard let h else { return }
                let watcher = Unmanaged<SignalWatcher>.fromOpaque(h.pointee.data!).takeUnretainedValue()
                h.deallocate()
                watcher.closing -= 1
                if watcher.closing == 0 { watcher.loop.unregister(watcher) }
            }
        }
    }

    func closeForShutdown() { closeHandles() }
}
