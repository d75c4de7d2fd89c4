/// Names one worker incarnation: the pool slot it fills and how many workers filled that
/// slot before it. A replacement keeps the slot and gets the next generation.
public struct WorkerID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The pool slot, `0..<workers`.
    public var slot: Int
    /// Incarnation number within the slot, starting at 0.
    public var generation: UInt32

    public init(slot: Int, generation: UInt32) {
        self.slot = slot
        self.generation = generation
    }

    public var description: String { "w\(slot).\(generation)" }
}
