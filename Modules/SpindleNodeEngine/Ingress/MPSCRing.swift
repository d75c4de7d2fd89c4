import Synchronization

/// A bounded lock-free multi-producer, single-consumer ring (after Vyukov's bounded queue).
///
/// Each cell carries a sequence number: a producer claims a position with one compare-exchange
/// on `tail`, writes the value, then publishes it by storing the sequence; the single consumer
/// reads cells in order. Producers never block each other for longer than a failed CAS, and
/// never block the consumer.
///
/// Not generic on purpose: a generic class whose cells hold an `Atomic` made the Swift 6.3
/// runtime corrupt the heap while instantiating the cell's metadata in release builds, so the
/// ring is written for `IngressEvent` only.
final class MPSCRing: @unchecked Sendable {
    typealias Element = IngressEvent

    // @unchecked Sendable: a cell's `value` is written only by the producer that claimed the
    // cell (between its CAS on `tail` and its release-store of `sequence`) and read only by the
    // consumer after an acquire-load of `sequence` shows it published; `head` is touched only
    // by the single consumer (the node's thread).
    private let cells: [RingCell]
    private let mask: Int
    private let tail = Atomic<Int>(0)
    private var head = 0

    init(capacity: Int) {
        var n = 1
        while n < max(2, capacity) { n <<= 1 }
        cells = (0..<n).map { RingCell($0) }
        mask = n - 1
    }

    var capacity: Int { mask + 1 }

    /// Appends `value`; false when the ring is full.
    func push(_ value: Element) -> Bool {
        var pos = tail.load(ordering: .relaxed)
        while true {
            let cell = cells[pos & mask]
            let seq = cell.sequence.load(ordering: .acquiring)
            if seq == pos {
                let (exchanged, original) = tail.compareExchange(expected: pos, desired: pos &+ 1, ordering: .relaxed)
                if exchanged {
                    cell.value = value
                    cell.sequence.store(pos &+ 1, ordering: .releasing)
                    return true
                }
                pos = original
            } else if seq < pos {
                return false
            } else {
                pos = tail.load(ordering: .relaxed)
            }
        }
    }

    /// Removes the oldest published value (consumer only).
    func pop() -> Element? {
        let cell = cells[head & mask]
        guard cell.sequence.load(ordering: .acquiring) == head &+ 1 else { return nil }
        let v = cell.value
        cell.value = nil
        cell.sequence.store(head &+ mask &+ 1, ordering: .releasing)
        head &+= 1
        return v
    }

    /// Whether no published value waits (exact for the consumer; a hint for others).
    var isEmpty: Bool {
        cells[head & mask].sequence.load(ordering: .acquiring) != head &+ 1
    }
}

/// One cell of `MPSCRing`: a sequence number and the value it guards.
final class RingCell: @unchecked Sendable {
    // @unchecked Sendable: see `MPSCRing` — `value` is handed between threads only through
    // the release/acquire pair on `sequence`.
    let sequence: Atomic<Int>
    var value: IngressEvent?

    init(_ s: Int) { sequence = Atomic(s) }
}
