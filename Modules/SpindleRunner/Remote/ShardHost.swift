import Logging
import SpindleKernel
import Synchronization

/// Serves one shard to a remote coordinator: connects, says hello, runs each phase it is asked
/// to run and replies with the result, until the coordinator says stop or the connection closes.
///
/// Phases run on the host's own thread by default, or inline on the transport's thread (`Execution`).
public final class ShardHost: Sendable {
    public let shard: any Shard
    private let connection: any TransportConnection
    /// Runs phases off the transport's thread; nil when they run inline on it.
    private let thread: ThreadPool?
    private let hlc: HybridLogicalClock
    private let clock: any SpindleClock
    private let logger: Logger

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

    private struct State {
        var ending: Ending?
        var waiters: [CheckedContinuation<Ending, Never>] = []
        var ghosts: [NodeKey: GhostNode] = [:]
        /// The last placement built, reused while the coordinator's shard list is unchanged.
        var placement: ShardPlacement?
    }
    private let state = Mutex(State())

    /// Where a shard host runs its shard's phases.
    public enum Execution: Sendable {
        /// On a thread of its own: the transport keeps reading while a phase runs.
        case ownThread
        /// On the transport's thread that delivered the request: one thread hop fewer per phase
        /// (lower latency), but the connection is not read while a phase runs. Right for a
        /// process that only serves its shard.
        case transportThread
    }

    private init(shard: any Shard, connection: any TransportConnection, clock: any SpindleClock,
                 logger: Logger, execution: Execution, spinIterations: Int) {
        self.shard = shard
        self.connection = connection
        self.clock = clock
        self.hlc = HybridLogicalClock(clock: clock)
        self.logger = logger
        switch execution {
        case .ownThread: thread = ThreadPool(threads: 1, name: "spindle-shardhost", spinIterations: spinIterations)
        case .transportThread: thread = nil
        }
    }

    private func perform(_ work: @escaping @Sendable () -> Void) {
        if let thread { thread.submit(work) } else { work() }
    }

    /// Connects to the coordinator's `ShardServerListener` at `coordinator` and starts serving.
    /// - Throws: `RunnerError.remoteFailure` when the coordinator cannot be reached.
    public static func serve(_ shard: any Shard, coordinator: Address, transport: any Transport,
                             clock: any SpindleClock = SystemClock(),
                             logger: Logger = Logger(label: "spindle.runner.shard-host"),
                             execution: Execution = .ownThread,
                             spinIterations: Int = 2_000) async throws(RunnerError) -> ShardHost {
        let connection: any TransportConnection
        do {
            connection = try await transport.connect(to: coordinator)
        } catch {
            throw .remoteFailure(shard: shard.id, reason: "cannot reach the coordinator at \(coordinator): \(error)")
        }
        let host = ShardHost(shard: shard, connection: connection, clock: clock, logger: logger,
                             execution: execution, spinIterations: spinIterations)
        connection.start(ConnectionHandler(
            onEnvelope: { envelope in host.received(envelope) },
            onClose: { reason in host.end(.disconnected("\(reason)")) }))
        var w = WireWriter()
        w.u64(shard.id.value)
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

    /// Closes the connection and stops the host's thread.
    public func shutdown() async {
        connection.close()
        end(.disconnected("shut down locally"))
        thread?.shutdown()
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
                var w = WireWriter()
                w.u64(self.shard.stateDigest())
                try? self.connection.send(Envelope(protocolTag: .runner, kind: RunnerMessageKind.digestReply.rawValue,
                                                   flags: .response, correlation: envelope.correlation,
                                                   stamp: self.hlc.tick(), payload: w.bytes))
            }
        case .stop:
            end(.stopped)
            connection.close()
        case .hello, .phaseDone, .digestReply:
            logger.warning("ignoring unexpected runner message", metadata: ["kind": "\(kind)"])
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
        let (ghosts, placement): ([NodeKey: GhostNode], ShardPlacement) = state.withLock { s in
            for op in request.ghostOps {
                switch op {
                case .install(let g): s.ghosts[g.key] = g
                case .remove(let k): s.ghosts[k] = nil
                }
            }
            if let p = s.placement, p.shards == request.placementShards, p.virtualNodes == request.virtualNodes {
                return (s.ghosts, p)
            }
            let p = ShardPlacement(shards: request.placementShards, virtualNodes: request.virtualNodes)
            s.placement = p
            return (s.ghosts, p)
        }
        let context = ShardContext(tick: request.tick, phase: request.phase, shard: shard.id,
                                   placement: placement, logger: logger,
                                   ghostView: ghosts.isEmpty ? nil : .fixed(ghosts))
        let t0 = clock.now()
        let result = PhaseExecution.run(shard, context: context, delivery: request.delivery,
                                        ghostRequests: request.ghostRequests)
        let reply = PhaseReply(round: request.round, tick: request.tick, phase: request.phase,
                               shard: shard.id, result: result, duration: clock.now() - t0)
        do {
            try connection.send(Envelope(protocolTag: .runner, kind: RunnerMessageKind.phaseDone.rawValue,
                                         flags: .response, correlation: request.round,
                                         stamp: hlc.tick(), payload: reply.encode()))
        } catch {
            logger.error("cannot reply to the coordinator: \(error)")
        }
    }
}
