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

    public var description: String {
        switch self {
        case .insecureListen(let a):
            return "refusing to listen on \(a) without a cluster key: a host agent starts programs, so anything beyond loopback must authenticate its clients"
        case .cannotListen(let e): return "host agent cannot listen: \(e)"
        case .notStartable(let s): return "host agent cannot start: \(s)"
        }
    }
}
