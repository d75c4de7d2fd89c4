import SpindleKernel

/// What the envelope that started an execution said about its sender (all nil for executions
/// the host started).
public struct InboundContext: Sendable, Equatable {
    public var sourcePeer: NodeID?
    /// The request id to answer (the envelope's correlation), when a reply is expected.
    public var requestID: UInt64?
    public var arrival: MonotonicInstant?
    /// Deadline budget the sender had left when it sent the envelope.
    public var remainingBudget: Duration?

    public init(sourcePeer: NodeID? = nil, requestID: UInt64? = nil, arrival: MonotonicInstant? = nil,
                remainingBudget: Duration? = nil) {
        self.sourcePeer = sourcePeer
        self.requestID = requestID
        self.arrival = arrival
        self.remainingBudget = remainingBudget
    }
}

/// The op being dispatched: its index, execution, the node's own id and the inbound context.
public struct CurrentCall: Sendable {
    /// Index of the op in the installed program (-1 outside a dispatch).
    public internal(set) var opIndex: Int = -1
    public internal(set) var execution = ExecID(0)
    public let selfID: NodeID
    public internal(set) var inbound = InboundContext()
    /// Completions recorded during this dispatch; applied when it returns.
    var completions: [(CommandID, Result<OpOutputs, OpFailureReason>)] = []
    var nextCommand: UInt64 = 1

    init(selfID: NodeID) {
        self.selfID = selfID
    }

    mutating func allocateCommand() -> CommandID {
        defer { nextCommand &+= 1 }
        return CommandID(nextCommand)
    }
}
