import Synchronization

/// Fans values out to any number of subscribers, each with its own `BoundedBuffer`: a slow
/// subscriber loses values (and is told how many) instead of holding memory without bound.
final class Broadcast<Element: Sendable>: Sendable {
    typealias Item = BoundedBuffer<Element>.Item

    private struct Subscriber {
        var buffer: BoundedBuffer<Element>
        var waiter: CheckedContinuation<Item?, Never>?
    }

    private struct State {
        var subscribers: [UInt64: Subscriber] = [:]
        var nextID: UInt64 = 0
        var finished = false
    }

    private let state = Mutex(State())

    /// Subscribes with a buffer of `capacity`, first holding `initial` (and `missed`, counted
    /// before it).
    func subscribe(capacity: Int, initial: [Element] = [], missed: Int = 0) -> UInt64 {
        state.withLock { s in
            var buffer = BoundedBuffer<Element>(capacity: capacity)
            buffer.recordMissed(missed)
            for e in initial { buffer.append(e) }
            let id = s.nextID
            s.nextID += 1
            s.subscribers[id] = Subscriber(buffer: buffer)
            return id
        }
    }

    /// Hands `value` to every subscriber (waiting ones at once).
    func publish(_ value: Element) {
        publish { $0.append(value) }
    }

    /// Tells every subscriber that `n` values were dropped upstream.
    func publishMissed(_ n: Int) {
        guard n > 0 else { return }
        publish { $0.recordMissed(n) }
    }

    private func publish(_ add: (inout BoundedBuffer<Element>) -> Void) {
        let wake = state.withLock { s -> [(CheckedContinuation<Item?, Never>, Item)] in
            guard !s.finished else { return [] }
            var wake: [(CheckedContinuation<Item?, Never>, Item)] = []
            for id in s.subscribers.keys {
                add(&s.subscribers[id]!.buffer)
                if let w = s.subscribers[id]!.waiter, let item = s.subscribers[id]!.buffer.next() {
                    s.subscribers[id]!.waiter = nil
                    wake.append((w, item))
                }
            }
            return wake
        }
        for (w, item) in wake { w.resume(returning: item) }
    }

    /// Ends every subscription once its buffer is drained; later subscriptions end at once.
    func finish() {
        let waiting = state.withLock { s -> [CheckedContinuation<Item?, Never>] in
            s.finished = true
            var out: [CheckedContinuation<Item?, Never>] = []
            for id in s.subscribers.keys {
                if let w = s.subscribers[id]!.waiter {
                    s.subscribers[id]!.waiter = nil
                    out.append(w)
                }
            }
            return out
        }
        for w in waiting { w.resume(returning: nil) }
    }

    /// The next item for subscriber `id`, waiting for one; nil when finished or cancelled.
    func next(_ id: UInt64) async -> Item? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Item?, Never>) in
                let now = state.withLock { s -> Item?? in
                    guard s.subscribers[id] != nil else { return .some(nil) }
                    if let item = s.subscribers[id]!.buffer.next() { return .some(item) }
                    if s.finished { return .some(nil) }
                    s.subscribers[id]!.waiter = c
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            unsubscribe(id)
        }
    }

    /// Ends subscriber `id` (a waiting `next` returns nil).
    func unsubscribe(_ id: UInt64) {
        let waiter = state.withLock { s in s.subscribers.removeValue(forKey: id)?.waiter }
        waiter?.resume(returning: nil)
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
}

/// An `AsyncSequence` over one `Broadcast` subscription, made when the sequence is made (so
/// nothing published after `events()` or `logs()` returned is missed). Iterate it once; the
/// subscription ends when the sequence and its iterator are released or the iterating task
/// is cancelled.
public struct BufferedSequence<Element: Sendable>: AsyncSequence, Sendable {
    private let token: Token

    init<Value: Sendable>(_ broadcast: Broadcast<Value>, capacity: Int, initial: [Value] = [], missed: Int = 0,
                          element: @escaping @Sendable (BoundedBuffer<Value>.Item) -> Element) {
        let id = broadcast.subscribe(capacity: capacity, initial: initial, missed: missed)
        token = Token(next: { await broadcast.next(id).map(element) }, cancel: { broadcast.unsubscribe(id) })
    }

    /// Iterates an existing subscription (made earlier with `subscribe`).
    init<Value: Sendable>(_ broadcast: Broadcast<Value>, subscription id: UInt64,
                          element: @escaping @Sendable (BoundedBuffer<Value>.Item) -> Element,
                          onEnd: @escaping @Sendable () -> Void = {}) {
        token = Token(next: { await broadcast.next(id).map(element) }, cancel: {
            broadcast.unsubscribe(id)
            onEnd()
        })
    }

    final class Token: Sendable {
        let next: @Sendable () async -> Element?
        let cancel: @Sendable () -> Void
        init(next: @escaping @Sendable () async -> Element?, cancel: @escaping @Sendable () -> Void) {
            self.next = next
            self.cancel = cancel
        }
        deinit { cancel() }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let token: Token
        public mutating func next() async -> Element? { await token.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(token: token) }

    /// Ends the subscription now (a waiting iteration ends).
    public func cancel() { token.cancel() }
}
