import HeapModule
import SpindleKernel

/// A bounded heap of timers that pops them in deadline order, ties in scheduling order.
struct TimerHeap<Payload: Sendable>: Sendable {
    struct Entry: Comparable, Sendable {
        var deadline: MonotonicInstant
        var sequence: UInt64
        var payload: Payload

        static func < (a: Entry, b: Entry) -> Bool {
            (a.deadline, a.sequence) < (b.deadline, b.sequence)
        }

        static func == (a: Entry, b: Entry) -> Bool {
            a.deadline == b.deadline && a.sequence == b.sequence
        }
    }

    let capacity: Int
    private var heap = Heap<Entry>()
    private var sequence: UInt64 = 0
    /// Timers refused because the heap was full.
    private(set) var refused: UInt64 = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }

    /// Schedules `payload` at `deadline`; false (and counted) when the heap is full.
    mutating func schedule(at deadline: MonotonicInstant, _ payload: Payload) -> Bool {
        guard heap.count < capacity else {
            refused &+= 1
            return false
        }
        sequence &+= 1
        heap.insert(Entry(deadline: deadline, sequence: sequence, payload: payload))
        return true
    }

    /// The earliest deadline.
    var nextDeadline: MonotonicInstant? { heap.min?.deadline }

    /// Removes and returns the earliest timer due at `now`, if any.
    mutating func popDue(now: MonotonicInstant) -> (deadline: MonotonicInstant, payload: Payload)? {
        guard let m = heap.min, m.deadline <= now else { return nil }
        let e = heap.removeMin()
        return (e.deadline, e.payload)
    }
}
