import SpindleKernel

/// The node's typed event bus: events published during a poll, counted per kind, handed to the
/// host in the poll outcome and to the sites programs subscribed.
public struct TypedBus: Sendable {
    private var counts: [UInt64]
    /// Events published since the last poll outcome was made, with the time they were published.
    private(set) var pending: [(at: MonotonicInstant, event: NodeEvent)] = []
    var now: MonotonicInstant = .zero

    public init() {
        counts = Array(repeating: 0, count: NodeEventKind.allCases.count)
    }

    /// Publishes `event`.
    public mutating func publish(_ event: NodeEvent) {
        counts[Self.index(event.kind)] &+= 1
        pending.append((now, event))
    }

    /// How many events of `kind` were published over the node's life.
    public func count(_ kind: NodeEventKind) -> UInt64 { counts[Self.index(kind)] }

    mutating func take() -> [(at: MonotonicInstant, event: NodeEvent)] {
        defer { pending.removeAll(keepingCapacity: true) }
        return pending
    }

    var hasPending: Bool { !pending.isEmpty }

    private static func index(_ kind: NodeEventKind) -> Int {
        NodeEventKind.allCases.firstIndex(of: kind)!
    }
}
