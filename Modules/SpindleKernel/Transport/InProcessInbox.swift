import DequeModule
import Synchronization

/// One direction of an in-process connection: the FIFO of items waiting for a handler, and
/// the serial drain that delivers them.
///
/// Delivery is serial per inbox: at most one drainer runs at a time (the `draining` flag), it
/// takes the whole queue in one batch under the lock and calls the handler outside the lock,
/// so handler calls never overlap and keep FIFO order. `onClose` is the last item ever
/// delivered.
final class InProcessInbox: Sendable {
    enum Item: Sendable {
        case envelope(Envelope)
        case close(CloseReason)
    }

    struct State {
        var queue: Deque<Item> = []
        /// An empty buffer with capacity that the drainer swaps with `queue`, so steady
        /// traffic allocates nothing.
        var spare: Deque<Item> = []
        /// Items held back by a delay fault, in FIFO order with non-decreasing due times.
        var delayed: Deque<(due: MonotonicInstant, item: Item)> = []
        var handler: ConnectionHandler?
        var draining = false
        /// A close item has been queued; nothing else is accepted.
        var finished = false
        /// Set once the close item has been delivered.
        var closeDelivered = false
        /// Why sends into this inbox fail (the reason as the *sender* sees it).
        var sendRefusal: CloseReason?
        /// Senders waiting in `waitUntilWritable` for this inbox to drain.
        var writableWaiters: [CheckedContinuation<CloseReason?, Never>] = []
    }

    let state = Mutex(State())
    let highWatermark: Int
    let lowWatermark: Int

    init(highWatermark: Int, lowWatermark: Int) {
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
    }

    /// Appends items (or holds them until `due`); returns true when the caller must start a drain.
    /// - Throws: the sender-side close reason when the inbox refuses sends.
    func push(_ envelope: Envelope, copies: Int, due: MonotonicInstant?) throws(TransportError) -> Bool {
        let outcome: Result<Bool, TransportError> = state.withLock { s in
            if let r = s.sendRefusal { return .failure(.closed(r)) }
            if let due {
                let d = max(due, s.delayed.last?.due ?? due)
                for _ in 0..<copies { s.delayed.append((d, .envelope(envelope))) }
                return .success(false)
            }
            if let last = s.delayed.last {
                // Keep FIFO: queue behind the envelopes still held back.
                for _ in 0..<copies { s.delayed.append((last.due, .envelope(envelope))) }
                return .success(false)
            }
            for _ in 0..<copies { s.queue.append(.envelope(envelope)) }
            return .success(Self.claim(&s))
        }
        return try outcome.get()
    }

    /// Marks the inbox closed. `discardPending` drops undelivered items (local close, broken
    /// connection); otherwise the close queues behind them (the peer closed after sending).
    func close(_ reason: CloseReason, refuseSendsWith refusal: CloseReason, discardPending: Bool) -> Bool {
        let waiters: [CheckedContinuation<CloseReason?, Never>] = state.withLock { s in
            if s.sendRefusal == nil { s.sendRefusal = refusal }
            let w = s.writableWaiters
            s.writableWaiters = []
            guard !s.finished else { return w }
            s.finished = true
            if discardPending {
                s.queue.removeAll()
                s.delayed.removeAll()
                s.queue.append(.close(reason))
            } else if let last = s.delayed.last {
                s.delayed.append((last.due, .close(reason)))
            } else {
                s.queue.append(.close(reason))
            }
            return w
        }
        for w in waiters { w.resume(returning: refusal) }
        return claimDrain()
    }

    /// Installs the handler; returns true when the caller must start a drain. Ignored after the first.
    func start(_ handler: ConnectionHandler) -> Bool {
        let installed = state.withLock { s in
            guard s.handler == nil else { return false }
            s.handler = handler
            return true
        }
        return installed && claimDrain()
    }

    /// Moves held-back items whose time has come into the queue; returns (moved, mustDrain, nextDue).
    func releaseDue(now: MonotonicInstant) -> (moved: Int, drain: Bool, next: MonotonicInstant?) {
        let moved = state.withLock { s in
            var n = 0
            while let head = s.delayed.first, head.due <= now {
                s.queue.append(s.delayed.removeFirst().item)
                n += 1
            }
            return n
        }
        let next = state.withLock { $0.delayed.first?.due }
        return (moved, moved > 0 && claimDrain(), next)
    }

    /// Claims the drainer role when there is something to deliver and a handler to deliver to.
    private func claimDrain() -> Bool {
        state.withLock { Self.claim(&$0) }
    }

    private static func claim(_ s: inout State) -> Bool {
        guard !s.draining, s.handler != nil, !s.queue.isEmpty, !s.closeDelivered else { return false }
        s.draining = true
        return true
    }

    /// Delivers until the queue is empty. Only the claimant of `claimDrain` calls this.
    func drain() {
        // `batch` starts as the spare buffer and goes back there on exit; in between it trades
        // places with `queue`, so the queue always has storage and steady traffic allocates nothing.
        var batch: Deque<Item> = []
        var runOfEnvelopes: [Envelope] = []
        var first = true
        while true {
            let next: (ConnectionHandler, [CheckedContinuation<CloseReason?, Never>])? = state.withLock { s in
                if first { swap(&batch, &s.spare); first = false }
                guard !s.queue.isEmpty, !s.closeDelivered, let h = s.handler else {
                    s.draining = false
                    swap(&batch, &s.spare)
                    return nil
                }
                swap(&batch, &s.queue)
                var w: [CheckedContinuation<CloseReason?, Never>] = []
                if !s.writableWaiters.isEmpty {
                    w = s.writableWaiters
                    s.writableWaiters = []
                }
                return (h, w)
            }
            guard let (handler, waiters) = next else { return }
            for w in waiters { w.resume(returning: nil) }
            let batchHandler = handler.onEnvelopes
            while let item = batch.popFirst() {      // moves out: no copy per envelope
                switch item {
                case .envelope(let e):
                    if let batchHandler {
                        // Consecutive envelopes go to a batch handler in one call.
                        runOfEnvelopes.append(e)
                        if case .envelope = batch.first { continue }
                        batchHandler(runOfEnvelopes)
                        runOfEnvelopes.removeAll(keepingCapacity: true)
                    } else {
                        handler.onEnvelope(e)
                    }
                case .close(let reason):
                    state.withLock { s in
                        s.closeDelivered = true
                        s.queue.removeAll()
                        s.delayed.removeAll()
                    }
                    handler.onClose(reason)
                    state.withLock { $0.draining = false; $0.handler = nil }
                    return
                }
            }
            batch.removeAll(keepingCapacity: true)
        }
    }

    /// True while at most `highWatermark` items wait for delivery (the non-suspending check
    /// behind `isWritable`; `waitUntilWritable` adds the hysteresis down to `lowWatermark`).
    var isBelowHighWatermark: Bool {
        state.withLock { s in s.queue.count + s.delayed.count <= highWatermark }
    }

    /// Waits while more than `highWatermark` items wait for delivery, until at most
    /// `lowWatermark` remain. Returns the refusal reason if the inbox closes meanwhile.
    func waitUntilWritable() async -> CloseReason? {
        let quick: CloseReason?? = state.withLock { s in
            if let r = s.sendRefusal { return .some(r) }
            return s.queue.count + s.delayed.count <= highWatermark ? .some(nil) : nil
        }
        if let quick { return quick }
        return await withCheckedContinuation { (c: CheckedContinuation<CloseReason?, Never>) in
            let resumeNow: CloseReason?? = state.withLock { s in
                if let r = s.sendRefusal { return .some(r) }
                if s.queue.count + s.delayed.count <= lowWatermark { return .some(nil) }
                s.writableWaiters.append(c)
                return nil
            }
            if let resumeNow { c.resume(returning: resumeNow) }
        }
    }
}
