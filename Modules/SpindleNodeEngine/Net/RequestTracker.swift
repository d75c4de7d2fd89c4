import SpindleKernel

/// Wire requests in flight: request id → the command waiting for the reply, with a time to
/// live after which the request is given up.
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
        return id
    }

    /// The reply for `id` arrived: removes and returns its entry (nil when unknown or expired).
    public mutating func finish(_ id: UInt64) -> Entry? {
        entries.removeValue(forKey: id)
    }

    /// The entry for `id` without removing it.
    public func entry(_ id: UInt64) -> Entry? { entries[id] }

    /// Removes and returns the requests whose time to live has passed, oldest id first.
    public mutating func expire(now: MonotonicInstant) -> [(id: UInt64, entry: Entry)] {
        var out: [(UInt64, Entry)] = []
        for (id, e) in entries where e.expiresAt <= now { out.append((id, e)) }
        out.sort { $0.0 < $1.0 }
        for (id, _) in out { entries[id] = nil }
        return out
    }

    /// The earliest expiry, for scheduling the next poll.
    public var nextExpiry: MonotonicInstant? { entries.values.map(\.expiresAt).min() }
}
