import SpindleKernel

/// A shard as the runner sees it: in this process, or served by a remote shard server.
public enum ShardMember: Sendable {
    /// Runs on the runner's tasklet pool.
    case local(any Shard)
    /// Runs in a shard server reached over a transport.
    case remote(RemoteShard)

    public var id: ShardID {
        switch self {
        case .local(let s): return s.id
        case .remote(let r): return r.id
        }
    }
}
