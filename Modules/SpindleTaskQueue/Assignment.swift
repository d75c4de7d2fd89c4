/// One task handed to a worker: the master's task and the request made for it.
public struct Assignment<Kind: TaskKind>: Sendable {
    /// The queue-local sequence number that the worker's answer must carry back.
    public let seq: UInt64
    /// The master's task (backends keep it for feedback routing; it is not sent).
    public let task: Kind.Task
    /// What the worker performs.
    public let request: Kind.Request
    /// The task's cancel switch.
    public let cancel: CancelSwitch

    @inlinable
    init(seq: UInt64, task: Kind.Task, request: Kind.Request, cancel: CancelSwitch) {
        self.seq = seq
        self.task = task
        self.request = request
        self.cancel = cancel
    }
}

/// A worker's answer to one assignment.
public struct Completion<Kind: TaskKind>: Sendable {
    public enum Outcome: Sendable {
        case response(Kind.Response)
        case marshalFailed(MarshalError)
        /// `perform` threw; `retryable` says whether the error asked for another attempt.
        case failed(any Error, retryable: Bool)
    }

    public let seq: UInt64
    public let outcome: Outcome

    @inlinable
    public init(seq: UInt64, outcome: Outcome) {
        self.seq = seq
        self.outcome = outcome
    }
}
