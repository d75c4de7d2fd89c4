import DequeModule

/// A FIFO that holds at most `capacity` elements and counts what it drops: what a slow
/// subscriber of events or logs gets instead of unbounded memory. No I/O, no locks.
///
/// When full, a new element is dropped (the ones already held keep their order) and the
/// buffer records a gap: `next()` returns the elements before the gap, then `.missed(n)`
/// with how many were dropped there, then what came after.
public struct BoundedBuffer<Element: Sendable>: Sendable {
    public enum Item: Sendable {
        case element(Element)
        /// `n` elements were dropped at this point.
        case missed(Int)
    }

    public let capacity: Int
    private var items: Deque<Item> = []
    /// Elements held (gaps not counted).
    public private(set) var count = 0
    /// Every element dropped so far.
    public private(set) var totalMissed = 0

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// Appends `element`, or drops and counts it when `capacity` elements are held.
    /// - Returns: false when it was dropped.
    @discardableResult
    public mutating func append(_ element: Element) -> Bool {
        guard count < capacity else {
            recordMissed(1)
            return false
        }
        items.append(.element(element))
        count += 1
        return true
    }

    /// Records that `n` elements were dropped before arriving here (by a producer upstream).
    public mutating func recordMissed(_ n: Int) {
        guard n > 0 else { return }
        totalMissed += n
        if case .missed(let m)? = items.last {
            items[items.count - 1] = .missed(m + n)
        } else {
            items.append(.missed(n))
        }
    }

    /// The oldest element or gap, or nil when empty.
    public mutating func next() -> Item? {
        guard let item = items.popFirst() else { return nil }
        if case .element = item { count -= 1 }
        return item
    }

    public var isEmpty: Bool { items.isEmpty }
}
