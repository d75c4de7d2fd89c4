import CLibUV
import Synchronization

/// A one-shot or repeating timer on an event loop; ``cancel()`` stops it from any thread.
///
/// Created by ``EventLoop/scheduleTimer(after:_:)`` and ``EventLoop/scheduleRepeating(every:_:)``.
/// The work runs on the loop thread. libuv timers have millisecond resolution; delays are
/// rounded up, so a timer never fires early.
public final class LoopTimer: LoopResource, @unchecked Sendable {
    // @unchecked Sendable: `cancelled` is atomic; `handle` and `work` are touched only on the
    // loop thread.
    public let loop: EventLoop
    private let delayMilliseconds: UInt64
    private let repeatMilliseconds: UInt64
    private let cancelled = Atomic<Bool>(false)
    private var handle: UnsafeMutablePointer<uv_timer_t>?
    private var work: (@Sendable () -> Void)?

    init(loop: EventLoop, delay: Duration, repeating: Duration?, work: @escaping @Sendable () -> Void) {
        self.loop = loop
        self.delayMilliseconds = LoopTimer.milliseconds(delay)
        self.repeatMilliseconds = repeating.map { max(1, LoopTimer.milliseconds($0)) } ?? 0
        self.work = work
    }

    /// Whole milliseconds, rounded up; negative durations count as zero.
    static func milliseconds(_ d: Duration) -> UInt64 {
        let (seconds, attoseconds) = d.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let perMillisecond: Int64 = 1_000_000_000_000_000
        let ms = UInt64(seconds) &* 1000 &+ UInt64((attoseconds + perMillisecond - 1) / perMillisecond)
        return ms
    }

    /// True once cancelled (or, for a one-shot timer, never relevant after it fired).
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    /// Stops the timer; its work will not start afterwards. Idempotent, any thread.
    public func cancel() {
        if cancelled.exchange(true, ordering: .relaxed) { return }
        loop.runOnLoop { self.closeHandle() }
    }

    /// Starts the libuv timer (loop thread).
    func start() {
        loop.assertInLoop("start a timer")
        guard !isCancelled, !loop.isClosing else { work = nil; return }
        let h = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        // libuv's timer init cannot fail today; should it, the timer is dropped rather than
        // started on an uninitialised handle.
        guard uv_timer_init(loop.uvLoop, h) == 0 else {
            h.deallocate()
            work = nil
            return
        }
        h.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        handle = h
        loop.register(self)
        uv_update_time(loop.uvLoop)
        uv_timer_start(h, { h in
            guard let h, let data = h.pointee.data else { return }
            Unmanaged<LoopTimer>.fromOpaque(data).takeUnretainedValue().fire()
        }, delayMilliseconds, repeatMilliseconds)
    }

    private func fire() {
        if isCancelled { closeHandle(); return }
        if repeatMilliseconds == 0 {
            let body = work
            closeHandle()
            body?()
        } else {
            work?()
        }
    }

    private func closeHandle() {
        work = nil
        guard let h = handle else { return }
        handle = nil
        uv_close(UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self)) { h in
            guard let h else { return }
            let timer = Unmanaged<LoopTimer>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            h.deallocate()
            timer.loop.unregister(timer)
        }
    }

    func closeForShutdown() {
        cancelled.store(true, ordering: .relaxed)
        closeHandle()
    }
}

extension EventLoop {
    /// Runs `work` once on the loop thread after `delay`; the returned timer can cancel it.
    @discardableResult
    public func scheduleTimer(after delay: Duration, _ work: @escaping @Sendable () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self, delay: delay, repeating: nil, work: work)
        runOnLoop { timer.start() }
        return timer
    }

    /// Runs `work` on the loop thread every `interval` (first after one interval) until cancelled.
    public func scheduleRepeating(every interval: Duration, _ work: @escaping @Sendable () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self, delay: max(interval, .milliseconds(1)), repeating: interval, work: work)
        runOnLoop { timer.start() }
        return timer
    }
}
