import SpindleKernel

/// Why one host did not install a pushed config snapshot.
public enum ConfigPushFailure: Sendable, Hashable, CustomStringConvertible {
    /// Nothing answered at the host's address (refused, no route, closed before a reply).
    case unreachable(String)
    /// The host's transport refused the cluster key (wrong or missing key).
    case refusedAuthentication(String)
    /// No acknowledgement before the attach deadline.
    case timedOut(after: Duration)
    /// The agent answered and declined the snapshot; its reason.
    case rejectedConfig(String)
    /// The connection failed after it was established, before the acknowledgement.
    case connectionLost(String)
    /// The agent acknowledged a different snapshot than the one pushed.
    case digestMismatch(expected: UInt64, acknowledged: UInt64)

    public var description: String {
        switch self {
        case .unreachable(let s): return "unreachable (\(s))"
        case .refusedAuthentication(let s): return "refused authentication (\(s))"
        case .timedOut(let d): return "timed out after \(d)"
        case .rejectedConfig(let s): return "rejected config (\(s))"
        case .connectionLost(let s): return "connection lost (\(s))"
        case .digestMismatch(let e, let a):
            return "acknowledged config digest \(String(a, radix: 16)), pushed \(String(e, radix: 16))"
        }
    }

    /// Classifies a transport failure while connecting or waiting for a reply.
    public init(_ error: TransportError) {
        switch error {
        case .closed(.authenticationFailed(let s)): self = .refusedAuthentication(s)
        case .closed(let reason): self = .connectionLost(reason.description)
        case .unreachable(_, let s): self = .unreachable(s)
        case .timedOut(let s): self = .unreachable("timed out: \(s)")
        default: self = .unreachable(error.description)
        }
    }
}

/// One failing host of a config push: where it is in the mesh and why it failed.
public struct HostFailure: Sendable, Hashable, CustomStringConvertible {
    public var rank: Int
    public var host: Address
    public var cause: ConfigPushFailure

    public init(rank: Int, host: Address, cause: ConfigPushFailure) {
        self.rank = rank
        self.host = host
        self.cause = cause
    }

    public var description: String { "host \(rank) \(host): \(cause)" }
}

/// A config push (attach or `pushConfig`) that did not reach every host: one entry per host
/// that did not acknowledge installation (HM-4), in host-rank order.
public struct ConfigPushError: Error, Sendable, Hashable, CustomStringConvertible {
    public var mesh: String
    public var hostCount: Int
    public var failures: [HostFailure]

    public init(mesh: String, hostCount: Int, failures: [HostFailure]) {
        self.mesh = mesh
        self.hostCount = hostCount
        self.failures = failures
    }

    /// The failing hosts' addresses.
    public var failedHosts: [Address] { failures.map(\.host) }

    public var description: String {
        "config push to mesh \"\(mesh)\" failed on \(failures.count) of \(hostCount) host(s): "
            + failures.map(\.description).joined(separator: "; ")
    }
}
