import DequeModule
import SpindleKernel

/// Remembers recently seen inbound messages (by sender and sequence) so duplicates are
/// dropped. The window is bounded in count and in age; the oldest entries are evicted first.
struct InboundDedup: Sendable {
    struct Key: Hashable {
        var source: NodeID
        var sequence: UInt64
    }

    let capacity: Int
    let maxAge: Duration
    private var seen: Set<Key> = []
    private var order: Deque<(Key, MonotonicInstant)> = []
    /// Duplicates dropped.
    private(set) var duplicates: UInt64 = 0

    init(capacity: Int, maxAge: Duration) {
        self.capacity = max(1, capacity)
        self.maxAge = maxAge
    }

    var count: Int { seen.count }

    /// Records the message; false (and counted) when it was already seen inside the window.
    mutating func admit(source: NodeID, sequence: UInt64, now: MonotonicInstant) -> Bool {
        evict(now: now)
        let key = Key(source: source, sequence: sequence)
        guard seen.insert(key).inserted else {
            duplicates &+= 1
            return false
        }
        order.append((key, now))
        if order.count > capacity {
            let (old, _) = order.removeFirst()
            seen.remove(old)
        }
        return true
    }

    /// Forgets entries older than `maxAge`.
    mutating func evict(now: MonotonicInstant) {
        while let (key, at) = order.first, now - at > maxAge {
            order.removeFirst()
            seen.remove(key)
        }
    }

    func contains(source: NodeID, sequence: UInt64) -> Bool {
        seen.contains(Key(source: source, sequence: sequence))
    }
}
