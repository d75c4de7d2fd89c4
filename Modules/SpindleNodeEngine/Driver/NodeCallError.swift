import SpindleKernel

/// Why `NodeDriver.call` did not return a result; names the site, execution, op or field.
public enum NodeCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The ingress queue refused the start (its control lane is full).
    case rejected(site: String, IngressError)
    /// The node refused to start the execution (no program, unknown site, mistyped value).
    case refused(ExecID, NodeError)
    /// An op of the execution failed (the first failure; `reason` says how: `timeout`,
    /// `peerDown`, `overloaded`, `remote`…).
    case failed(OpFailure)
    /// The execution finished without writing any sink site.
    case noResult(ExecID)
    /// The execution wrote several sink sites; use `callForSinks` to read them all.
    case ambiguousResult(ExecID, sinks: [String])
    /// The awaiting task was cancelled (the execution was cancelled too).
    case cancelled(ExecID)
    /// The driver was shut down before the execution finished.
    case shutDown
    /// The input value could not be converted to a `Value`.
    case encoding(ValueCodingError)
    /// The result could not be converted to the requested type.
    case decoding(ValueCodingError)

    public var description: String {
        switch self {
        case .rejected(let site, let e): return "call to site `\(site)` not queued: \(e)"
        case .refused(let id, let e): return "\(id) refused: \(e)"
        case .failed(let f): return "call failed: \(f)"
        case .noResult(let id): return "\(id) finished without writing a sink site"
        case .ambiguousResult(let id, let sinks):
            return "\(id) wrote several sink sites (\(sinks.map { "`\($0)`" }.joined(separator: ", "))): use callForSinks"
        case .cancelled(let id): return "\(id) was cancelled"
        case .shutDown: return "the node driver was shut down"
        case .encoding(let e): return "call input: \(e)"
        case .decoding(let e): return "call result: \(e)"
        }
    }
}

extension FinishedExecution {
    /// The single result `NodeDriver.call` returns: the last value of the one sink site
    /// written, or the error that explains why there is none.
    public func singleResult() throws(NodeCallError) -> Value {
        if cancelled { throw .cancelled(id) }
        if let first = errors.first { throw .failed(first) }
        let written = results.filter { !$0.value.isEmpty }
        guard let only = written.first else { throw .noResult(id) }
        guard written.count == 1 else { throw .ambiguousResult(id, sinks: written.keys.sorted()) }
        return only.value[only.value.count - 1]
    }
}
