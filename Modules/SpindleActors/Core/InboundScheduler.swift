import DequeModule
import SpindleKernel

/// Who sent a call and to which actor: invocations of one pair run one at a time, in the
/// order they arrived (FIFO per caller–actor pair).
struct CallerActorPair: Hashable, Sendable {
    /// The calling node (its link's id when the node is not known).
    var caller: NodeID
    var actor: ActorID.Local
}

/// One call received and not yet answered.
struct InboundCallKey: Hashable, Sendable {
    var caller: NodeID
    var correlation: UInt64
}

/// The calls this node received, as a value type without I/O: which pair may run next,
/// which calls passed their deadline, which to cancel.
///
/// A pair runs one invocation at a time; the next starts when the shell reports the running
/// one `finished`. Calls of different pairs run concurrently.
struct InboundScheduler<Work> {
    struct Entry {
        var key: InboundCallKey
        var deadline: MonotonicInstant?
        var work: Work
    }

    fileprivate struct Pair {
        var running: InboundCallKey?
        var runningDeadline: MonotonicInstant?
        var queue: Deque<Entry> = []
    }

    private var pairs: [CallerActorPair: Pair] = [:]
    /// Which pair each known call belongs to.
    private var pairOf: [InboundCallKey: CallerActorPair] = [:]

    /// Calls known (queued or running).
    var count: Int { pairOf.count }

    /// A call arrived. Returns its work when the pair is idle (the shell starts it now); queues
    /// it otherwise. A duplicate of a known call is ignored (nil).
    mutating func arrive(_ pair: CallerActorPair, _ entry: Entry) -> Work? {
        guard pairOf[entry.key] == nil else { return nil }
        pairOf[entry.key] = pair
        // Mutated in place: a copy of the pair would copy its whole queue on the next append.
        return modify(pair) { p in
            if p.running == nil {
                p.running = entry.key
                p.runningDeadline = entry.deadline
                return entry.work
            }
            p.queue.append(entry)
            return nil
        }
    }

    /// The running call of its pair finished: returns the pair's next work to start, if any.
    mutating func finished(_ key: InboundCallKey) -> Entry? {
        guard let pair = pairOf[key], pairs[pair]?.running == key else { return nil }
        pairOf.removeValue(forKey: key)
        let next: Entry? = modify(pair) { p in
            guard let next = p.queue.popFirst() else { return nil }
            p.running = next.key
            p.runningDeadline = next.deadline
            return next
        }
        if next == nil { pairs.removeValue(forKey: pair) }
        return next
    }

    private mutating func modify<R>(_ pair: CallerActorPair, _ body: (inout Pair) -> R) -> R {
        body(&pairs[pair, default: Pair()])
    }

    enum Cancelled {
        /// It was waiting: taken out, never to run.
        case queued(Entry)
        /// It is running: the shell cancels its task (and reports `finished` when it ends).
        case running
        case unknown
    }

    /// The caller cancelled `key`.
    mutating func cancel(_ key: InboundCallKey) -> Cancelled {
        guard let pair = pairOf[key], let running = pairs[pair]?.running else { return .unknown }
        if running == key { return .running }
        let removed: Entry? = modify(pair) { p in
            guard let i = p.queue.firstIndex(where: { $0.key == key }) else { return nil }
            return p.queue.remove(at: i)
        }
        guard let removed else { return .unknown }
        pairOf.removeValue(forKey: key)
        return .queued(removed)
    }

    /// Calls whose deadline passed: the queued ones are taken out (the caller has given up on
    /// them), the running ones are named for cancellation. Both sorted by caller, then id.
    mutating func expire(now: MonotonicInstant) -> (dropped: [Entry], running: [InboundCallKey]) {
        var dropped: [Entry] = []
        var running: [InboundCallKey] = []
        for pair in Array(pairs.keys) {
            modify(pair) { p in
                if let r = p.running, let d = p.runningDeadline, d <= now {
                    running.append(r)
                    p.runningDeadline = nil   // named once
                }
                if p.queue.contains(where: { $0.deadline.map { $0 <= now } ?? false }) {
                    p.queue.removeAll { e in
                        guard let d = e.deadline, d <= now else { return false }
                        dropped.append(e)
                        return true
                    }
                }
            }
        }
        for e in dropped { pairOf.removeValue(forKey: e.key) }
        let order: (InboundCallKey, InboundCallKey) -> Bool = { ($0.caller, $0.correlation) < ($1.caller, $1.correlation) }
        return (dropped.sorted { order($0.key, $1.key) }, running.sorted(by: order))
    }

    /// Every call from `caller` (its link is gone: nobody waits for the answers): the queued
    /// ones are taken out, the running ones named for cancellation.
    mutating func dropAll(from caller: NodeID) -> (dropped: [Entry], running: [InboundCallKey]) {
        var dropped: [Entry] = []
        var running: [InboundCallKey] = []
        for pair in Array(pairs.keys) where pair.caller == caller {
            modify(pair) { p in
                dropped.append(contentsOf: p.queue)
                p.queue.removeAll()
                if let r = p.running { running.append(r) }
            }
        }
        for e in dropped { pairOf.removeValue(forKey: e.key) }
        let order: (InboundCallKey, InboundCallKey) -> Bool = { ($0.caller, $0.correlation) < ($1.caller, $1.correlation) }
        return (dropped.sorted { order($0.key, $1.key) }, running.sorted(by: order))
    }

    /// The earliest deadline of a known call.
    var nextDeadline: MonotonicInstant? {
        var next: MonotonicInstant? = nil
        func consider(_ d: MonotonicInstant?) {
            guard let d else { return }
            if next.map({ d < $0 }) ?? true { next = d }
        }
        for p in pairs.values {
            consider(p.runningDeadline)
            for e in p.queue { consider(e.deadline) }
        }
        return next
    }
}

extension InboundScheduler: Sendable where Work: Sendable {}
extension InboundScheduler.Entry: Sendable where Work: Sendable {}
extension InboundScheduler.Pair: Sendable where Work: Sendable {}
