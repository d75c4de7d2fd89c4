import HeapModule
import Synchronization

/// Something a `LinkTimer` wakes: a reliable link or listener.
protocol TimerDriven: AnyObject, Sendable {
    /// The deadline passed: do what is due and reschedule.
    func timerFired()
}

/// One timer for every reliable link and listener of the process: a heap of deadlines and
/// one task that sleeps until the earliest, instead of a ticking task per link.
///
/// Each registrant is held weakly under an id. `schedule(_:at:)` keeps, per id, only its
/// earliest pending deadline; an earlier deadline wakes the sleeping task. Deadlines are
/// instants of the kernel's `SystemClock`.
final class LinkTimer: Sendable {
    static let shared = LinkTimer()

    private struct Entry: Comparable {
        var deadline: UInt64
        var id: UInt64
        static func < (a: Entry, b: Entry) -> Bool { (a.deadline, a.id) < (b.deadline, b.id) }
    }

    private struct Registrant {
        weak var target: (any TimerDriven)?
        /// The deadline its live heap entry has (0: none).
        var scheduled: UInt64
    }

    private struct State {
        var heap = Heap<Entry>()
        var registrants: [UInt64: Registrant] = [:]
        var nextID: UInt64 = 1
        /// The deadline the task sleeps until (nil: no task, or it is working).
        var sleepingUntil: UInt64?
        var sleeper: Task<Void, Never>?
        var running = false
    }

    private let state = Mutex(State())
    private let clock = SystemClock()

    /// Registers `target`; returns its id for `schedule` and `cancel`.
    func register(_ target: any TimerDriven) -> UInt64 {
        state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            s.registrants[id] = Registrant(target: target, scheduled: 0)
            return id
        }
    }

    /// Forgets `id` and its deadline.
    func cancel(_ id: UInt64) {
        _ = state.withLock { $0.registrants.removeValue(forKey: id) }
    }

    /// Makes `id` fire at `deadline` (a `SystemClock` instant), unless it is already due
    /// earlier.
    func schedule(_ id: UInt64, at deadline: MonotonicInstant) {
        let at = max(deadline.nanoseconds, 1)
        let wake: Task<Void, Never>? = state.withLock { s in
            guard var r = s.registrants[id] else { return nil }
            if r.scheduled != 0 && r.scheduled <= at { return nil }
            r.scheduled = at
            s.registrants[id] = r
            s.heap.insert(Entry(deadline: at, id: id))
            if !s.running {
                s.running = true
                s.sleepingUntil = nil
                Task.detached { await self.run() }
                return nil
            }
            if let until = s.sleepingUntil, at < until {
                s.sleepingUntil = nil
                return s.sleeper
            }
            return nil
        }
        wake?.cancel()
    }

    /// Fires what is due, sleeps until the next deadline; ends when nothing is scheduled.
    private func run() async {
        while true {
            let now = clock.now().nanoseconds
            var due: [any TimerDriven] = []
            let next: UInt64? = state.withLock { s in
                while let top = s.heap.min, top.deadline <= now {
                    s.heap.removeMin()
                    guard var r = s.registrants[top.id], r.scheduled == top.deadline else { continue }
                    r.scheduled = 0
                    if let target = r.target {
                        s.registrants[top.id] = r
                        due.append(target)
                    } else {
                        s.registrants[top.id] = nil
                    }
                }
                if due.isEmpty, s.heap.isEmpty {
                    s.running = false
                    return nil
                }
                return s.heap.min?.deadline
            }
            for target in due { target.timerFired() }
            guard !due.isEmpty || next != nil else { return }
            guard let next, due.isEmpty else { continue }   // firing may have scheduled earlier work
            let sleeper = Task<Void, Never> {
                try? await Task.sleep(for: .nanoseconds(Int64(clamping: next &- min(next, self.clock.now().nanoseconds))))
            }
            let sleeping = state.withLock { s -> Bool in
                // Something earlier may have been scheduled since `next` was read.
                if let top = s.heap.min, top.deadline < next { return false }
                s.sleepingUntil = next
                s.sleeper = sleeper
                return true
            }
            if !sleeping { sleeper.cancel() }
            await sleeper.value
            state.withLock { s in
                s.sleepingUntil = nil
                s.sleeper = nil
            }
        }
    }
}
