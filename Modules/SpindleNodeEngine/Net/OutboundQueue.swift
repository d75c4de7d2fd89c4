import DequeModule
import SpindleKernel

/// Envelopes waiting for the next outbound drain. Bounded: when full, the oldest envelope is
/// dropped and counted, so a stalled transport cannot grow the node without limit.
struct OutboundQueue: Sendable {
    let capacity: Int
    private var queue: Deque<Envelope> = []
    /// Envelopes dropped because the queue was full.
    private(set) var dropped: UInt64 = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { queue.count }

    /// Queues `envelope`; returns the envelope dropped to make room, if any.
    @discardableResult
    mutating func push(_ envelope: Envelope) -> Envelope? {
        var evicted: Envelope?
        if queue.count >= capacity {
            evicted = queue.removeFirst()
            dropped &+= 1
        }
        queue.append(envelope)
        return evicted
    }

    /// Takes every queued envelope in FIFO order.
    mutating func drain() -> [Envelope] {
        guard !queue.isEmpty else { return [] }
        let out = Array(queue)
        queue.removeAll(keepingCapacity: true)
        return out
    }
}
