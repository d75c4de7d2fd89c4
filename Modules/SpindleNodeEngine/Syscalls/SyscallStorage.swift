import DequeModule

/// Named FIFOs for `SerializeEnqueue` / `SerializeDequeue`; each is bounded and drops (and
/// counts) what does not fit.
struct SerializeQueues: Sendable {
    let capacityPerName: Int
    private var queues: [String: Deque<Value>] = [:]
    private(set) var dropped: UInt64 = 0

    init(capacityPerName: Int) {
        self.capacityPerName = max(1, capacityPerName)
    }

    /// Appends to queue `name`; false (and counted) when it is full.
    mutating func enqueue(_ name: String, _ value: Value) -> Bool {
        var q = queues[name] ?? []
        guard q.count < capacityPerName else {
            dropped &+= 1
            return false
        }
        q.append(value)
        queues[name] = q
        return true
    }

    /// Removes the head of queue `name`.
    mutating func dequeue(_ name: String) -> Value? {
        guard var q = queues[name], !q.isEmpty else { return nil }
        let v = q.removeFirst()
        queues[name] = q.isEmpty ? nil : q
        return v
    }

    func count(_ name: String) -> Int { queues[name]?.count ?? 0 }
}

/// Values held back by `HoldStash` until a `HoldFlush` of the same name releases them;
/// bounded per name, dropping (and counting) the oldest.
struct HoldTable: Sendable {
    let capacityPerName: Int
    private var held: [String: [Value]] = [:]
    private(set) var dropped: UInt64 = 0

    init(capacityPerName: Int) {
        self.capacityPerName = max(1, capacityPerName)
    }

    mutating func stash(_ name: String, _ value: Value) {
        var l = held[name] ?? []
        if l.count >= capacityPerName {
            l.removeFirst()
            dropped &+= 1
        }
        l.append(value)
        held[name] = l
    }

    /// Takes every value held under `name`, oldest first.
    mutating func flush(_ name: String) -> [Value] {
        held.removeValue(forKey: name) ?? []
    }

    func count(_ name: String) -> Int { held[name]?.count ?? 0 }
}

/// Per-name ring buffers of the last values `Record` saw.
struct RecordRings: Sendable {
    let capacityPerName: Int
    private var rings: [String: Deque<Value>] = [:]
    /// Values overwritten because a ring was full.
    private(set) var overwritten: UInt64 = 0

    init(capacityPerName: Int) {
        self.capacityPerName = max(1, capacityPerName)
    }

    mutating func record(_ name: String, _ value: Value) {
        var r = rings[name] ?? []
        if r.count >= capacityPerName {
            r.removeFirst()
            overwritten &+= 1
        }
        r.append(value)
        rings[name] = r
    }

    /// The values recorded under `name`, oldest first.
    func values(_ name: String) -> [Value] { Array(rings[name] ?? []) }
}

/// Counting semaphores for `LimitAcquire` / `LimitRelease`, with FIFO waiters.
struct Limits: Sendable {
    struct Limit {
        var held = 0
        var waiters: Deque<Int> = []
    }

    private var limits: [String: Limit] = [:]

    init() {}

    /// Takes a unit of `name` if fewer than `max` are held; otherwise queues `waiter`.
    mutating func acquire(_ name: String, max: Int, waiter: Int) -> Bool {
        var l = limits[name] ?? Limit()
        defer { limits[name] = l }
        if l.held < max {
            l.held += 1
            return true
        }
        l.waiters.append(waiter)
        return false
    }

    /// Returns a unit of `name`; hands it straight to the first waiter, whose token is returned.
    mutating func release(_ name: String) -> Int? {
        guard var l = limits[name] else { return nil }
        defer { limits[name] = (l.held == 0 && l.waiters.isEmpty) ? nil : l }
        if let w = l.waiters.popFirst() { return w }
        l.held = max(0, l.held - 1)
        return nil
    }

    /// Forgets a waiter that gave up (its op failed or timed out).
    mutating func cancel(_ name: String, waiter: Int) {
        guard var l = limits[name] else { return }
        l.waiters.removeAll { $0 == waiter }
        limits[name] = l
    }

    func held(_ name: String) -> Int { limits[name]?.held ?? 0 }
    func waiting(_ name: String) -> Int { limits[name]?.waiters.count ?? 0 }
}
