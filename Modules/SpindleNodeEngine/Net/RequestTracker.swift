import SpindleKernel

/// Wire requests in flight: request id → the command waiting for the reply, with a time to
/// live after which the request is given up. Expiries come from a heap (a poll touches only
/// the requests that are due), with stale heap entries of finished requests skipped and
/// compacted away.
struct RequestTracker: Sendable {
    struct Entry: Sendable, Equatable {
        var command: CommandID
        var peer: NodeID
        var endpoint: String
        var sentAt: MonotonicInstant
        var expiresAt: MonotonicInstant
        var chain: ChainHop?
    }

    let capacity: Int
    private var entries: [UInt64: Entry] = [:]
    private var expiries = TimerHeap<UInt64>(capacity: .max)
    private var nextID: UInt64 = 1

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { entries.count }

    /// Registers a request; nil when `capacity` requests are already in flight.
    mutating func begin(_ entry: Entry) -> UInt64? {
        guard entries.count < capacity else { return nil }
        let id = nextID
        nextID &+= 1
        entries[id] = entry
        _ = expiries.schedule(at: entry.expiresAt, id)
        return id
    }

    /// The reply for `id` arrived: removes and returns its entry (nil when unknown or expired).
    mutating func finish(_ id: UInt64) -> Entry? {
        entries.removeValue(forKey: id)
    }

    /// The entry for `id` without removing it.
    func entry(_ id: UInt64) -> Entry? { entries[id] }

    /// Removes and returns the requests whose time to live has passed, earliest first.
    mutating func expire(now: MonotonicInstant) -> [(id: UInt64, entry: Entry)] {
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
    var nextExpiry: MonotonicInstant? { entries.isEmpty ? nil : expiries.nextDeadline }

    /// The requests in flight to `peer`, by id (a scan: for rare events like a peer going down).
    func requests(to peer: NodeID) -> [(id: UInt64, entry: Entry)] {
        entries.filter { $0.value.peer == peer }.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }
    }
}
