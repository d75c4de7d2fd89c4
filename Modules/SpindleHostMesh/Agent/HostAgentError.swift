import SpindleKernel

/// Why a host agent could not start.
public enum HostAgentError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Listening beyond loopback without an authenticating transport would let anyone on the
    /// network run programs on this host.
    case insecureListen(Address)
    /// The transport could not listen.
    case cannotListen(TransportError)
    /// `start()` was called twice, or after `shutdown()`.
    case notStartable(String)
    /// No `spindle-keeper` executable was found (the places searched, in order): without it
    /// procs could outlive the agent.
    case keeperNotFound(searched: [String])

    public var description: String {
        switch self {
        case .insecureListen(let a):
            return "refusing to listen on \(a) without a cluster key: a host agent starts programs, so anything beyond loopback must authenticate its clients"
        case .cannotListen(let e): return "host agent cannot listen: \(e)"
        case .notStartable(let s): return "host agent cannot start: \(s)"
        case .keeperNotFound(let searched):
            return "host agent cannot start: no executable spindle-keeper (install it next to the agent's executable, or set SPINDLE_KEEPER or Configuration.keeperPath); searched \(searched.joined(separator: ", "))"
        }
    }
}
