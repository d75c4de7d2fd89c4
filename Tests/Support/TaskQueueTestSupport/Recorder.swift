import Synchronization

/// Collects events from hooks and lets a test wait for a condition on them, with a timeout
/// that fails the wait instead of hanging.
public final class Recorder<Event: Sendable>: Sendable {
    private struct Waiter {
        var predicate: @Sendable ([Event]) -> Bool
        var continuation: CheckedContinuation<Bool, Never>
        var id: Int
    }
    private struct State {
        var events: [Event] = []
        var waiters: [Waiter] = []
        var nextID = 0
    }
    private let state = Mutex(State())

    public init() {}

    public var events: [Event] { state.withLock { $0.events } }

    public func record(_ event: Event) {
        let ready = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.events.append(event)
            let events = s.events
            var hit: [CheckedContinuation<Bool, Never>] = []
            s.waiters.removeAll { w in
                guard w.predicate(events) else { return false }
                hit.append(w.continuation)
                return true
            }
            return hit
        }
        for c in ready { c.resume(returning: true) }
    }

    /// Waits until `predicate` holds over the events; false after `timeout`.
    public func wait(timeout: Duration = .seconds(20), until predicate: @escaping @Sendable ([Event]) -> Bool) async -> Bool {
        let id = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                    let now = self.state.withLock { s -> Bool in
                        if predicate(s.events) { return true }
                        s.waiters.append(Waiter(predicate: predicate, continuation: c, id: id))
                        return false
                    }
                    if now { c.resume(returning: true) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                let c = self.state.withLock { s -> CheckedContinuation<Bool, Never>? in
                    guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.waiters.remove(at: i).continuation
                }
                c?.resume(returning: false)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
