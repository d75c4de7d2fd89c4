/// One of the three shard phases of a tick; the coordinator's Advance follows them.
///
/// Every shard finishes a phase before any shard starts the next one (a barrier separates
/// them), so within a tick `sense` always sees the state the previous tick left.
public enum Phase: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Read-only: every shard decides what it will do.
    case sense = 1
    /// Writes: every shard applies its decisions and may emit cross-shard edges and messages.
    case act = 2
    /// Edges and messages from Act are delivered, then every shard decays its state.
    case decay = 3

    public var description: String {
        switch self {
        case .sense: return "sense"
        case .act: return "act"
        case .decay: return "decay"
        }
    }
}
