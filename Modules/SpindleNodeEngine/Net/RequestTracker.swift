import SpindleKernel

/// Wire requests in flight: request id → the command waiting for the reply, with a time to
/// live after which the request is given up. Expiries come from a heap (a poll touches only
/// the requests that are due), with stale heap entries of finished requests skipped and
/// compacted away.
public struct RequestTracker: Sendable {
    public struct Entry: Sendable, Equatable {
        public var command: CommandID
        public var peer: NodeID
        public var endpoint: String
        public var sentAt: MonotonicInstant
        public var expiresAt: MonotonicInstant
        public var chain: ChainHop?
    }

    public let capacity: Int
    private var entries: [UInt64: Entry] = [:]
    private var expiries = TimerHeap<UInt64>(capacity: .max)
    private var nextID: UInt64 = 1

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    public var count: Int { entries.count }

    /// Registers a request; nil when `capacity` requests are already in flight.
    public mutating func begin(_ entry: Entry) -> UInt64? {
        guard entries.count < capacity else { return nil }
        let id = nextID
        nextID &+= 1
        entries[id] = entry
        _ = expiries.schedule(at: entry.expiresAt, id)
        return id
    }

    /// The reply for `id` arrived: removes and returns its entry (nil when unknown or expired).
    public mutating func finish(_ id: UInt64) -> Entry? {
        entries.removeValue(forKey: id)
    }

    /// The entry for `id` without removing it.
    public func entry(_ id: UInt64) -> Entry? { entries[id] }

    /// Removes and returns the requests whose time to live has passed, earliest first.
    public mutating func expire(now: MonotonicInstant) -> [(id: UInt64, entry: Entry)] {
        var out: [(UInt64, Entry)] = []
        while let (_, id) = expiries.popDue(now: now) {
            guard let e = entries[id], e.expiresAt <= now else { continue }
            entries[id] = nil
            out.append((id, e))
        }
        if expiries.count > 2 * entries.count + 1024 {
            var fresh = TimerHeap<UInt64>(capacity: .max)
            for (id, e) in entries.sorted(by: { $0.key < $1.key }) { _ = fresh.schedule(at: e.expiresAt, id) }
            expiries = fresh
        }
        return out
    }

    /// The earliest expiry still in the heap (possibly of a request already answered: the
    /// host then polls once for nothing), for scheduling the next poll.
    public var nextExpiry: MonotonicInstant? { entries.isEmpty ? nil : expiries.nextDeadline }

    /// The requests in flight to `peer`, by id (a scan: for rare events like a peer going down).
    public func requests(to peer: NodeID) -> [(id: UInt64, entry: Entry)] {
        entries.filter { $0.value.peer == peer }.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }
    }
}
