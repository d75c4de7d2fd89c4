import SpindleKernel

/// What a poll did and what the host must do next.
public struct PollOutcome: Sendable {
    public enum Status: Sendable, Equatable {
        /// Nothing to do: no ingress, no ready op, no due timer.
        case idle
        /// Work was done and none is left ready.
        case worked
        /// The op budget ran out with ops still ready: poll again soon.
        case budgetExhausted
    }

    public var status: Status = .idle
    public var opsFired = 0
    /// Envelopes for the transport, in order.
    public var outbound: [Envelope] = []
    /// Events the program emitted for the host.
    public var appEvents: [AppEvent] = []
    /// Bus events published during the poll.
    public var events: [BusRecord] = []
    /// Executions that finished; readable through `Node.execution(_:)` until the next poll.
    public var finished: [FinishedExecution] = []
    /// Starts the node refused (`.startReserved` events for an unknown site, a mistyped
    /// value…), with the reserved id and why.
    public var refusedStarts: [RefusedStart] = []
    /// When the node next has something to do by itself (timer, deadline), if ever.
    public var nextDeadline: MonotonicInstant?
}

/// One bus event with the time it was published.
public struct BusRecord: Sendable, Equatable, CustomStringConvertible {
    public var at: MonotonicInstant
    public var event: NodeEvent
    public var description: String { "\(at) \(event)" }
}

/// An event a program emitted for the host (syscall `Emit`).
public struct AppEvent: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var value: Value
    public var execution: ExecID
    public var at: MonotonicInstant
    public var description: String { "\(at) \(name)=\(value) (\(execution))" }
}

/// An execution that has finished: the values written to sink sites.
public struct FinishedExecution: Sendable, Equatable {
    public var id: ExecID
    /// Sink site name → values written to it, in order.
    public var results: [String: [Value]]
    public var startedAt: MonotonicInstant
    public var finishedAt: MonotonicInstant
    /// How many of its ops failed.
    public var failures: Int
    /// The failures of its ops, in order.
    public var errors: [OpFailure] = []
    /// Whether it was cancelled.
    public var cancelled = false

    public init(id: ExecID, results: [String: [Value]], startedAt: MonotonicInstant, finishedAt: MonotonicInstant,
                failures: Int, errors: [OpFailure] = [], cancelled: Bool = false) {
        self.id = id
        self.results = results
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.failures = failures
        self.errors = errors
        self.cancelled = cancelled
    }

    /// The last value written to sink `site`.
    public func result(_ site: String) -> Value? { results[site]?.last }
}

/// A start the node refused: the id reserved for it and why.
public struct RefusedStart: Sendable, Equatable {
    public var id: ExecID
    public var error: NodeError
}

/// A host request the node refused.
public enum NodeError: Error, Sendable, Equatable, CustomStringConvertible {
    case noProgram
    case unknownSite(String)
    /// The value's type does not fit the site's declared type.
    case typeMismatch(site: String, expected: ValueType, found: ValueType)

    public var description: String {
        switch self {
        case .noProgram: return "no program is installed on this node"
        case .unknownSite(let s): return "the installed program has no site `\(s)`"
        case .typeMismatch(let s, let e, let f): return "site `\(s)` takes \(e) values, not \(f)"
        }
    }
}
