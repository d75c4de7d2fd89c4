import Logging
import SpindleKernel
import SpindleSupport
import SpindleTasklets
import Synchronization

/// Serves one shard to a remote coordinator: connects, says hello, runs each phase it is asked
/// to run and replies with the result, until the coordinator says stop or the connection closes.
/// It also answers the coordinator's calls: the state digest, a snapshot (checkpoints), a
/// restore (recovery), a rollback to the state it kept at a tick's start.
///
/// Phases run on a tasklet pool lane of the host's own by default, or inline on the transport's
/// thread (`Execution`).
public final class ShardHost: Sendable {
    public let shard: any Shard
    private let connection: any TransportConnection
    /// Runs requests off the transport's thread, in order; nil when they run inline on it.
    private let pool: TaskletPool?
    private let hlc: HybridLogicalClock
    private let clock: any SpindleClock
    private let logger: Logger
    /// The shard's contributions to collectives in the running tick (used only by the request
    /// being served; requests are served one at a time).
    private let sink = ContributionSink()

    /// Why serving ended.
    public enum Ending: Sendable, Equatable, CustomStringConvertible {
        /// The coordinator sent stop.
        case stopped
        /// The connection closed (the text says why).
        case disconnected(String)

        public var description: String {
            switch self {
            case .stopped: return "stopped by the coordinator"
            case .disconnected(let why): return "disconnected: \(why)"
            }
        }
    }

    /// The state kept at a tick's start, to roll back to.
    private struct RollbackPoint {
        var tick: UInt64
        var snapshot: [UInt8]
        var ghosts: [NodeKey: GhostNode]
    }

    private struct State {
        var ending: Ending?
        var waiters: [CheckedContinuation<Ending, Never>] = []
        var ghosts: [NodeKey: GhostNode] = [:]
        /// The last placement built, reused while the coordinator's shard list is unchanged.
        var placement: ShardPlacement?
        /// The previous tick's collective results, encoded (from the last Sense request).
        var collectives = CollectiveResults()
        var rollbackPoint: RollbackPoint?
        /// Snapshot chunks of a restore in progress, by correlation.
        var restoring: [UInt64: [UInt8]] = [:]
        /// Requests waiting for the host's lane (own-thread execution), in arrival order.
        var queue: [@Sendable () -> Void] = []
        var draining = false
        var drainer: Task<Void, Never>?
        /// Requests started and not finished (their replies not yet sent).
        var inProgress = 0
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        /// The one shutdown, which every `shutdown()` call waits for.
        var shutdown: Task<Void, Never>?
    }
    private let state = Mutex(State())

    /// Where a shard host runs its shard's phases.
    public enum Execution: Sendable {
        /// On a lane of a one-lane tasklet pool of the host's own: the transport keeps reading
        /// while a phase runs.
        case ownThread
        /// On the transport's thread that delivered the request: one thread hop fewer per phase
        /// (lower latency), but the connection is not read while a phase runs. Right for a
        /// process that only serves its shard.
        case transportThread
    }

    private init(shard: any Shard, connection: any TransportConnection, clock: any SpindleClock,
                 logger: Logger, execution: Execution) {
        self.shard = shard
        self.connection = connection
        self.clock = clock
        self.hlc = HybridLogicalClock(clock: clock)
        self.logger = logger
        switch execution {
        case .ownThread:
            pool = TaskletPool(configuration: TaskletPool.Configuration(maxLanes: 1, threadName: "spindle-shardhost"))
        case .transportThread:
            pool = nil
        }
    }

    /// Runs `work` in request order: inline, or on the host's lane. Once serving ended, no
    /// request starts.
    private func perform(_ work: @escaping @Sendable () -> Void) {
        guard let pool else {
            let accepted = state.withLock { s -> Bool in
                guard s.ending == nil else { return false }
                s.inProgress += 1
                return true
            }
            guard accepted else { return }
            work()
            finished()
            return
        }
        let start: Bool = state.withLock { s in
            guard s.ending == nil else { return false }
            s.queue.append(work)
            if s.draining { return false }
            s.draining = true
            return true
        }
        guard start else { return }
        let task = Task {
            // One launch serves every request queued meanwhile; requests never overlap.
            _ = try? await pool.launch(workers: 1, shared: (), scratch: { @Sendable _ in () }) { _ in
                while let next = self.nextQueued() {
                    next()
                    self.finished()
                }
            }
        }
        state.withLock { $0.drainer = task }
    }

    private func nextQueued() -> (@Sendable () -> Void)? {
        state.withLock { s in
            guard s.ending == nil, !s.queue.isEmpty else {
                s.queue.removeAll()
                s.draining = false
                return nil
            }
            s.inProgress += 1
            return s.queue.removeFirst()
        }
    }

    /// A request finished (its reply sent): wakes a shutdown waiting for it.
    private func finished() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.inProgress -= 1
            guard s.inProgress == 0 else { return [] }
            defer { s.idleWaiters.removeAll() }
            return s.idleWaiters
        }
        for w in waiters { w.resume() }
    }

    /// Waits until no request is running.
    private func waitUntilIdle() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { s -> Bool in
                if s.inProgress == 0 { return true }
                s.idleWaiters.append(c)
                return false
            }
            if idle { c.resume() }
        }
    }

    /// Connects to the coordinator's `ShardServerListener` at `coordinator` and starts serving.
    /// - Throws: `RunnerError.remoteFailure` when the coordinator cannot be reached.
    public static func serve(_ shard: any Shard, coordinator: Address, transport: any Transport,
                             clock: any SpindleClock = SystemClock(),
                             logger: Logger = Logger(label: "spindle.runner.shard-host"),
                             execution: Execution = .ownThread) async throws(RunnerError) -> ShardHost {
        let connection: any TransportConnection
        do {
            connection = try await transport.connect(to: coordinator)
        } catch {
            throw .remoteFailure(shard: shard.id, reason: "cannot reach the coordinator at \(coordinator): \(error)")
        }
        let host = ShardHost(shard: shard, connection: connection, clock: clock, logger: logger, execution: execution)
        connection.start(ConnectionHandler(
            onEnvelope: { envelope in host.received(envelope) },
            onClose: { reason in host.end(.disconnected("\(reason)")) }))
        var w = ByteWriter()
        w.u64(shard.id.value)
        w.u8(shard.readsGhosts ? 1 : 0)
        do {
            try connection.send(Envelope(protocolTag: .runner, kind: RunnerMessageKind.hello.rawValue,
                                         stamp: host.hlc.tick(), payload: w.bytes))
        } catch {
            await host.shutdown()
            throw .remoteFailure(shard: shard.id, reason: "cannot say hello to \(coordinator): \(error)")
        }
        return host
    }

    /// Waits until serving ends.
    public func waitUntilDone() async -> Ending {
        await withCheckedContinuation { c in
            let done: Ending? = state.withLock { s in
                if let e = s.ending { return e }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    /// Stops serving, gracefully: requests not yet started are dropped, a request running
    /// finishes and its reply is sent, then the connection closes (flushing that reply) and the
    /// host's lane stops. A phase that never returns holds the shutdown up. Idempotent:
    /// concurrent calls wait for the same shutdown.
    public func shutdown() async {
        let task = state.withLock { s -> Task<Void, Never> in
            if let t = s.shutdown { return t }
            let t = Task { await self.stopServing() }
            s.shutdown = t
            return t
        }
        await task.value
    }

    private func stopServing() async {
        end(.disconnected("shut down locally"))
        await waitUntilIdle()
        connection.close()
        let drainer = state.withLock { $0.drainer }
        await drainer?.value
        await pool?.shutdown()
    }

    private func end(_ ending: Ending) {
        let waiters: [CheckedContinuation<Ending, Never>] = state.withLock { s in
            guard s.ending == nil else { return [] }
            s.ending = ending
            let w = s.waiters
            s.waiters.removeAll()
            return w
        }
        for w in waiters { w.resume(returning: ending) }
    }

    private func received(_ envelope: Envelope) {
        hlc.receive(envelope.stamp)
        guard envelope.protocolTag == .runner, let kind = RunnerMessageKind(rawValue: envelope.kind) else {
            logger.warning("ignoring a message that is not of the runner protocol",
                           metadata: ["tag": "\(envelope.protocolTag)", "kind": "\(envelope.kind)"])
            return
        }
        switch kind {
        case .phaseStart:
            perform { self.runPhase(envelope) }
        case .digestRequest:
            perform {
                var w = ByteWriter()
                w.u64(self.shard.stateDigest())
                self.reply(.digestReply, to: envelope, payload: w.bytes)
            }
        case .snapshotRequest:
            perform { self.sendSnapshot(for: envelope) }
        case .restoreChunk:
            perform { self.receiveRestoreChunk(envelope) }
        case .rollbackRequest:
            perform { self.rollback(envelope) }
        case .stop:
            end(.stopped)
            connection.close()
        case .hello, .phaseDone, .digestReply, .snapshotChunk, .restoreDone, .rollbackDone:
            logger.warning("ignoring unexpected runner message", metadata: ["kind": "\(kind)"])
        }
    }

    private func reply(_ kind: RunnerMessageKind, to request: Envelope, payload: [UInt8]) {
        do {
            try connection.send(Envelope(protocolTag: .runner, kind: kind.rawValue, flags: .response,
                                         correlation: request.correlation, stamp: hlc.tick(), payload: payload))
        } catch {
            logger.error("cannot reply to the coordinator: \(error)")
        }
    }

    private func runPhase(_ envelope: Envelope) {
        let request: PhaseRequest
        do {
            request = try PhaseRequest.decode(envelope.payload)
        } catch {
            logger.error("closing: \(error)")
            connection.close()
            return
        }
        let (ghosts, placement, collectives): ([NodeKey: GhostNode], ShardPlacement, CollectiveResults) = state.withLock { s in
            for op in request.ghostOps {
                switch op {
                case .install(let g): s.ghosts[g.key] = g
                case .remove(let k): s.ghosts[k] = nil
                case .clear: s.ghosts.removeAll()
                }
            }
            if request.phase == .sense {
                var results = CollectiveResults()
                for (name, value) in request.collectives { results.encoded[name] = value }
                s.collectives = results
            }
            if let p = s.placement, p.shards == request.placementShards, p.strategy == request.placement {
                return (s.ghosts, p, s.collectives)
            }
            let p = ShardPlacement(shards: request.placementShards, strategy: request.placement)
            s.placement = p
            return (s.ghosts, p, s.collectives)
        }
        let t0 = clock.now()
        var saved = false
        if request.phase == .sense {
            sink.reset()
            if request.saveRollbackPoint {
                // The state at the tick's start: what a rollback of this tick restores.
                if let snapshot = try? shard.snapshot() {
                    state.withLock { $0.rollbackPoint = RollbackPoint(tick: request.tick, snapshot: snapshot, ghosts: ghosts) }
                    saved = true
                } else {
                    state.withLock { $0.rollbackPoint = nil }
                }
            }
        }
        let context = ShardContext(tick: request.tick, phase: request.phase, shard: shard.id,
                                   placement: placement, logger: logger,
                                   ghostView: ghosts.isEmpty ? nil : .fixed(ghosts),
                                   collectives: collectives, sink: sink)
        var result = PhaseExecution.run(shard, context: context, delivery: request.delivery,
                                        ghostRequests: request.ghostRequests)
        if request.phase == .decay, case .success(var work) = result {
            if let conflict = sink.conflict {
                result = .failure(PhaseFailure(reason: conflict))
            } else {
                do {
                    work.contributions = try sink.entries.map { ($0.name, try $0.encode()) }
                    result = .success(work)
                } catch {
                    result = .failure(PhaseFailure(reason: "a contribution to a collective does not encode: \(error)"))
                }
            }
        }
        var reply = PhaseReply(round: request.round, tick: request.tick, phase: request.phase,
                               shard: shard.id, result: result, duration: clock.now() - t0)
        reply.rollbackPointSaved = saved
        do {
            try connection.send(Envelope(protocolTag: .runner, kind: RunnerMessageKind.phaseDone.rawValue,
                                         flags: .response, correlation: request.round,
                                         stamp: hlc.tick(), payload: reply.encode()))
        } catch {
            logger.error("cannot reply to the coordinator: \(error)")
        }
    }

    private func sendSnapshot(for request: Envelope) {
        let snapshot: [UInt8]
        do {
            snapshot = try shard.snapshot()
        } catch {
            reply(.snapshotChunk, to: request, payload: SnapshotChunk.failed("\(error)").encode())
            return
        }
        let size = max(1024, min(4 << 20, connection.maximumFrameSize - 4096))
        for chunk in SnapshotChunk.split(snapshot, size: size) {
            reply(.snapshotChunk, to: request, payload: chunk.encode())
        }
    }

    private func receiveRestoreChunk(_ envelope: Envelope) {
        let chunk: SnapshotChunk
        do { chunk = try SnapshotChunk.decode(envelope.payload) } catch {
            logger.error("closing: \(error)")
            connection.close()
            return
        }
        guard case .piece(let last, let bytes) = chunk else {
            reply(.restoreDone, to: envelope, payload: CallStatus.failed("a restore carries snapshot pieces").encode())
            return
        }
        let whole: [UInt8]? = state.withLock { s in
            s.restoring[envelope.correlation, default: []].append(contentsOf: bytes)
            return last ? s.restoring.removeValue(forKey: envelope.correlation) : nil
        }
        guard let whole else { return }
        do {
            try shard.restore(whole)
            state.withLock { $0.rollbackPoint = nil }
            reply(.restoreDone, to: envelope, payload: CallStatus.done.encode())
        } catch {
            reply(.restoreDone, to: envelope, payload: CallStatus.failed("\(error)").encode())
        }
    }

    private func rollback(_ envelope: Envelope) {
        var r = ByteReader(envelope.payload)
        guard let tick = try? r.u64("tick") else {
            reply(.rollbackDone, to: envelope, payload: CallStatus.failed("malformed rollback request").encode())
            return
        }
        guard let point = state.withLock({ $0.rollbackPoint }), point.tick == tick else {
            reply(.rollbackDone, to: envelope,
                  payload: CallStatus.failed("no state kept from the start of tick \(tick)").encode())
            return
        }
        do {
            try shard.restore(point.snapshot)
            state.withLock { $0.ghosts = point.ghosts }
            reply(.rollbackDone, to: envelope, payload: CallStatus.done.encode())
        } catch {
            reply(.rollbackDone, to: envelope, payload: CallStatus.failed("\(error)").encode())
        }
    }
}
