import Synchronization

/// Cancels a group of tasks at once: a task and every task injected on its behalf.
///
/// Pass the same switch to several `enqueue` calls to cancel them together; tasks injected
/// by `.stay(_, inject:)` inherit their parent's switch. Cancel with ``TaskQueue/cancel(_:)-(CancelSwitch)``.
public struct CancelSwitch: Hashable, Sendable, CustomStringConvertible {
    private static let counter = Atomic<UInt64>(1)

    /// A process-unique number.
    public let id: UInt64

    /// A new switch, distinct from every other.
    public init() {
        id = Self.counter.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    public var description: String { "cancel-\(id)" }
}
