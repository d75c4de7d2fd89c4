/// A task's priority: higher runs first; equal priorities run in enqueue order.
public struct QueuePriority: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int

    public init(_ rawValue: Int) { self.rawValue = rawValue }

    public static let low = QueuePriority(-10)
    public static let normal = QueuePriority(0)
    public static let high = QueuePriority(10)

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch rawValue {
        case -10: "low"
        case 0: "normal"
        case 10: "high"
        default: "priority(\(rawValue))"
        }
    }
}
