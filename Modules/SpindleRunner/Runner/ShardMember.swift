import SpindleKernel

/// A shard as the runner sees it: in this process, or served by a remote shard server.
public enum ShardMember: Sendable {
    /// Runs on the runner's thread pool.
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

/// The runner's per-shard bookkeeping.
final class ShardSlot: Sendable {
    let member: ShardMember
    let id: ShardID
    let ghosts: SharedGhostCache

    init(member: ShardMember, ghostCapacity: Int) {
        self.member = member
        self.id = member.id
        self.ghosts = SharedGhostCache(capacity: ghostCapacity)
    }

    var local: (any Shard)? {
        if case .local(let s) = member { return s }
        return nil
    }

    var remote: RemoteShard? {
        if case .remote(let r) = member { return r }
        return nil
    }
}
