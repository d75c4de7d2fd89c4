import SpindleKernel

/// The decisions of a `run(_:)` as a value-type state machine: when to checkpoint, how many
/// ticks to run in one launch, and what to do when a tick fails (recover a lost shard from
/// the last checkpoint, roll back to it, or give up). No I/O: the runner's shell performs the
/// actions and reports back.
///
/// ```
///  next(currentTick) ──► .checkpoint(at:) ──checkpointed(at:)──┐
///        ▲          └──► .runTicks(n) ──(ticks done)──────────┤
///        └────────────────────────────────────────────────────┘
///  failed(…) ──► .respawn(shards, from: checkpoint) ──recovered(to:)──► next(…)
///            ├─► .restoreCheckpoint(tick)           ──recovered(to:)──► .fail(rolledBack)
///            └─► .fail(error)
/// ```
struct RunPlanner: Sendable, Equatable {
    /// The tick the run ends at.
    let target: UInt64
    let checkpointEvery: Int?
    let recovery: RecoveryPolicy
    let rollback: Rollback
    /// The tick of the last checkpoint written (by this run or before it).
    private(set) var lastCheckpoint: UInt64?
    /// Recoveries per shard in this run.
    private(set) var recoveries: [ShardID: Int] = [:]

    enum Action: Sendable, Equatable {
        /// Checkpoint now, at the current tick.
        case checkpoint(at: UInt64)
        /// Run this many ticks in one launch.
        case runTicks(Int)
        /// The run reached its target.
        case done
    }

    enum Decision: Sendable, Equatable {
        /// Start new servers for `shards`, restore every shard from the checkpoint at `from`, go on.
        case respawn([ShardID], from: UInt64)
        /// Restore every shard from the checkpoint at `tick`, then report the failure.
        case restoreCheckpoint(UInt64)
        /// Report the failure as it is.
        case fail(RunnerError)
    }

    init(target: UInt64, checkpointEvery: Int?, lastCheckpoint: UInt64?, recovery: RecoveryPolicy, rollback: Rollback) {
        self.target = target
        self.checkpointEvery = checkpointEvery
        self.lastCheckpoint = lastCheckpoint
        self.recovery = recovery
        self.rollback = rollback
    }

    /// What to do at `currentTick`.
    func next(currentTick: UInt64) -> Action {
        if let every = checkpointEvery {
            let due = lastCheckpoint == nil || (currentTick % UInt64(every) == 0 && lastCheckpoint != currentTick)
            if due { return .checkpoint(at: currentTick) }
        }
        guard currentTick < target else { return .done }
        var ticks = target - currentTick
        if let every = checkpointEvery {
            ticks = min(ticks, UInt64(every) - currentTick % UInt64(every))
        }
        return .runTicks(Int(clamping: ticks))
    }

    /// A checkpoint of `tick` was written.
    mutating func checkpointed(at tick: UInt64) { lastCheckpoint = tick }

    /// A tick failed with `error`; `lost` remote shards are gone; `rolledBack` says whether
    /// every shard is already back at the failed tick's start.
    mutating func failed(_ error: RunnerError, lost: [ShardID], rolledBack: Bool) -> Decision {
        if !lost.isEmpty {
            guard case .respawn(let maxAttempts) = recovery else { return .fail(error) }
            guard let checkpoint = lastCheckpoint else {
                return .fail(.recoveryFailed(shard: lost[0], tick: tickOf(error) ?? 0,
                                             reason: "there is no checkpoint to restore it from", cause: error))
            }
            for s in lost {
                let n = (recoveries[s] ?? 0) + 1
                recoveries[s] = n
                if n > maxAttempts {
                    return .fail(.recoveryFailed(shard: s, tick: tickOf(error) ?? 0,
                                                 reason: "recovered \(maxAttempts) times in this run already", cause: error))
                }
            }
            return .respawn(lost, from: checkpoint)
        }
        if !rolledBack, rollback == .lastCheckpoint, let checkpoint = lastCheckpoint {
            return .restoreCheckpoint(checkpoint)
        }
        return .fail(error)
    }

    private func tickOf(_ error: RunnerError) -> UInt64? {
        switch error.rootCause {
        case .shardLost(_, let t, _), .shardFailed(_, _, let t, _), .phaseTimedOut(_, let t, _, _, _): return t
        default: return nil
        }
    }
}
