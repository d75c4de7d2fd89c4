import SpindleKernel

/// What a shard produced in one phase.
struct PhaseWork: Sendable {
    var processed: Int = 0
    var edges: [ActOutput.PendingEdge] = []
    var messages: [(to: ShardID, payload: [UInt8])] = []
    var ghosts: [GhostNode] = []
    /// Decay of a remote shard: the tick's contributions to collectives, encoded, by name.
    var contributions: [(name: String, value: [UInt8])] = []
}

/// Why a shard's phase failed (the text of what it threw).
struct PhaseFailure: Error, Sendable, Equatable {
    var reason: String
}

/// Runs one phase of one shard in a shard server.
enum PhaseExecution {
    /// Runs `phase` on `shard`. Decay first delivers `delivery` and afterwards exports the ghosts
    /// in `ghostRequests`.
    static func run(_ shard: any Shard, context: ShardContext, delivery: ShardDelivery,
                    ghostRequests: [NodeKey]) -> Result<PhaseWork, PhaseFailure> {
        var work = PhaseWork()
        do {
            switch context.phase {
            case .sense:
                work.processed = try shard.sense(context)
            case .act:
                var output = ActOutput()
                work.processed = try shard.act(context, output: &output)
                work.edges = output.edges
                work.messages = output.messages
            case .decay:
                try shard.deliver(delivery, context: context)
                work.processed = try shard.decay(context)
                if !ghostRequests.isEmpty {
                    work.ghosts = exportGhosts(shard, keys: ghostRequests, context: context)
                }
            }
            return .success(work)
        } catch {
            return .failure(PhaseFailure(reason: "\(error)"))
        }
    }

    /// The shard's ghost copies of `keys`, stamped with its id and the tick.
    static func exportGhosts(_ shard: any Shard, keys: [NodeKey], context: ShardContext) -> [GhostNode] {
        shard.ghostNodes(for: keys, context: context).map { g in
            var g = g
            g.owner = shard.id
            g.tick = context.tick
            return g
        }
    }
}
