/// What an agent does when a proc ends without being asked to stop.
public enum RestartPolicy: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Leave it ended (the default).
    case never
    /// Like systemd's `Restart=on-failure`: a proc that exits non-zero or is killed by a signal
    /// is started again — same rank, same command and environment — after `backoff`, at most
    /// `maxRestarts` times; after that the rank is `failed` with the reason. A clean exit
    /// (code 0) is not restarted.
    case onFailure(maxRestarts: Int, backoff: Duration)

    public var description: String {
        switch self {
        case .never: return "never"
        case .onFailure(let n, let b): return "on failure (at most \(n), after \(b))"
        }
    }
}

/// When a spawned proc counts as ready.
public enum Readiness: Sendable, Hashable, Codable {
    /// When it connects back and announces itself (`MeshProc.announceReady()`); a spawn waits
    /// for every rank to be ready and fails if one ends first. The default.
    case announced
    /// As soon as its process runs (any program, like systemd's `Type=simple`); a spawn waits
    /// for every rank to have started, and a rank that already ended after it started counts.
    case started
}

/// How to spawn a proc mesh, beyond what each rank runs.
public struct SpawnOptions: Sendable, Hashable {
    public var restart: RestartPolicy
    /// A detached proc mesh outlives its client: it is owned by the cluster, not the attach,
    /// and any client holding the cluster key can list, stop and read its logs by name.
    public var detached: Bool
    public var readiness: Readiness

    public init(restart: RestartPolicy = .never, detached: Bool = false, readiness: Readiness = .announced) {
        self.restart = restart
        self.detached = detached
        self.readiness = readiness
    }
}
