import SpindleKernel

/// The calls this node has sent and not yet seen answered, as a value type without I/O.
///
/// Each call is tied to the route (link) it went out on and to a deadline on the system's
/// clock. Events — a reply, a lost route, the clock passing deadlines, cancellation — take
/// calls out and say how each ends; the shell resumes the waiting callers. Whatever comes
/// out is ordered by call id, so a shell driven step by step behaves the same every run.
struct OutboundCalls<Waiter> {
    struct Call {
        var id: UInt64
        /// The actor called; nil for a link introduction (waiting for a `welcome`).
        var actor: ActorID?
        var target: String
        /// The link the call went out on (0: dispatched locally).
        var route: UInt64
        var deadline: MonotonicInstant
        /// The budget the call started with (reported by `.timedOut`).
        var budget: Duration
        var startedAt: MonotonicInstant
        var waiter: Waiter
    }

    private var calls: [UInt64: Call] = [:]
    /// Ids handed out and not registered yet, and whether the caller cancelled meanwhile (its
    /// cancellation raced the registration).
    private var unregistered: [UInt64: Bool] = [:]
    private var nextID: UInt64 = 1

    var count: Int { calls.count }

    /// A fresh call id (never 0), to be registered (or forgotten) next.
    mutating func makeID() -> UInt64 {
        defer { nextID &+= 1 }
        unregistered[nextID] = false
        return nextID
    }

    /// Registers a call; returns false (and forgets the id) when it was cancelled first.
    mutating func register(_ call: Call) -> Bool {
        if unregistered.removeValue(forKey: call.id) == true { return false }
        calls[call.id] = call
        return true
    }

    /// Forgets an id that will not be registered (a one-way call, a refused one).
    mutating func forget(_ id: UInt64) { unregistered.removeValue(forKey: id) }

    /// The pending call `id`, left in place.
    func peek(_ id: UInt64) -> Call? { calls[id] }

    /// The call `id` ended (answered, or failed by the shell): it is taken out.
    mutating func take(_ id: UInt64) -> Call? { calls.removeValue(forKey: id) }

    /// The caller cancelled `id`: the call is taken out if registered; if it is about to be,
    /// its registration will fail; if it already ended, nothing happens.
    mutating func cancel(_ id: UInt64) -> Call? {
        if let c = calls.removeValue(forKey: id) { return c }
        if unregistered[id] != nil { unregistered[id] = true }
        return nil
    }

    /// Every call that went out on `route`, taken out, by id.
    mutating func takeAll(onRoute route: UInt64) -> [Call] {
        takeAll { $0.route == route }
    }

    /// Every call to an actor on `node`, taken out, by id.
    mutating func takeAll(toNode node: NodeID) -> [Call] {
        takeAll { $0.actor?.node == node }
    }

    /// The introductions waiting on `route`, taken out, by id.
    mutating func takeIntroductions(onRoute route: UInt64) -> [Call] {
        takeAll { $0.route == route && $0.actor == nil }
    }

    /// Every call whose deadline is at or before `now`, taken out, by id.
    mutating func takeExpired(now: MonotonicInstant) -> [Call] {
        takeAll { $0.deadline <= now }
    }

    /// Every call, taken out, by id.
    mutating func takeAll() -> [Call] { takeAll { _ in true } }

    private mutating func takeAll(where match: (Call) -> Bool) -> [Call] {
        let ids = calls.values.filter(match).map(\.id).sorted()
        return ids.compactMap { calls.removeValue(forKey: $0) }
    }

    /// The earliest deadline of a pending call.
    var nextDeadline: MonotonicInstant? { calls.values.lazy.map(\.deadline).min() }
}

extension OutboundCalls: Sendable where Waiter: Sendable {}
extension OutboundCalls.Call: Sendable where Waiter: Sendable {}
