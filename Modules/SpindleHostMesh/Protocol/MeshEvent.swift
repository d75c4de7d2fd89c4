import SpindleKernel

/// What `HostMesh.events()` and `ProcMesh.events()` report: supervision of procs and hosts.
public enum MeshEvent: Sendable, Hashable, CustomStringConvertible {
    /// A rank's state changed (every change the client learns of, in order per rank).
    case stateChanged(ProcStatus)
    /// A proc ended without being asked to stop: its exit code or signal, its stderr tail,
    /// and whether its restart policy starts it again.
    case died(ProcDeath)
    /// The agent at `host` stopped answering for the liveness bound, restarted, or ended the
    /// session: its pending calls failed and its ranks are `hostLost`.
    case hostLost(host: Address, hostRank: Int, reason: String)
    /// The agent at `host` answers again (the client re-installed its config there).
    case hostBack(host: Address, hostRank: Int)
    /// This subscriber fell behind: so many events were dropped here (its buffer was full).
    case missed(Int)

    public var description: String {
        switch self {
        case .stateChanged(let s): return "state \(s)"
        case .died(let d): return d.description
        case .hostLost(let h, let r, let why): return "host \(r) \(h) lost: \(why)"
        case .hostBack(let h, let r): return "host \(r) \(h) back"
        case .missed(let n): return "missed \(n) events"
        }
    }
}

/// What `ProcMesh.logs()` yields: output lines, or how many were dropped at this point.
public enum ProcLog: Sendable, Hashable, CustomStringConvertible {
    case line(ProcLogLine)
    /// Lines dropped here, by an agent or by this subscriber's buffer, because they were
    /// produced faster than they were read.
    case dropped(Int)

    public var description: String {
        switch self {
        case .line(let l): return l.description
        case .dropped(let n): return "(\(n) lines dropped)"
        }
    }
}
