import Distributed
import Logging
import SpindleKernel
import Synchronization

/// Where the answer to a received call goes.
enum ReplySink: Sendable {
    /// Back over the link it came in on.
    case link(PeerLink)
    /// To a caller on this node (a reference resolved as remote to a local actor id).
    case local
}

/// A received call, ready to run (a class: it is queued and handed between tasks).
final class InboundWork: Sendable {
    let key: InboundCallKey
    let pair: CallerActorPair
    let actor: any DistributedActor
    let actorID: ActorID
    let header: CallHeader
    let arguments: BinaryReader
    let budget: Duration?
    /// When the caller gives up: `budget` after the call arrived, on the system's clock.
    let deadline: MonotonicInstant?
    let oneWay: Bool
    let replyTo: ReplySink
    /// Set (under the system's lock) when the execution ended: a task that ends before its
    /// handle is recorded is not recorded.
    let finished = Atomic<Bool>(false)

    init(key: InboundCallKey, pair: CallerActorPair, actor: any DistributedActor, actorID: ActorID, header: CallHeader,
         arguments: BinaryReader, budget: Duration?, deadline: MonotonicInstant?, oneWay: Bool, replyTo: ReplySink) {
        self.key = key
        self.pair = pair
        self.actor = actor
        self.actorID = actorID
        self.header = header
        self.arguments = arguments
        self.budget = budget
        self.deadline = deadline
        self.oneWay = oneWay
        self.replyTo = replyTo
    }
}

extension SpindleActorSystem {
    /// An envelope arrived on link `id`.
    func received(_ e: Envelope, onLink id: UInt64) {
        guard let peer = state.withLock({ $0.peers[id] }) else { return }
        guard e.protocolTag == .actors else {
            refused(peer, "dropped an envelope of another protocol", ["protocol": "\(e.protocolTag)"])
            return
        }
        if let source = e.source {
            guard peer.learn(source) else {
                refused(peer, "dropped an envelope whose source is not the link's peer", ["source": "\(source)"])
                return
            }
            if peer.direction == .inbound {
                state.withLock { s in
                    if s.inboundByNode[source] == nil { s.inboundByNode[source] = id }
                }
            }
        }
        switch e.kind {
        case ActorWire.call: handleCall(e, from: peer)
        case ActorWire.reply: handleReply(e, from: peer)
        case ActorWire.cancel:
            guard let caller = peer.node else { return }
            cancelInbound(InboundCallKey(caller: caller, correlation: e.correlation))
        case ActorWire.hello:
            if peer.direction == .inbound, let source = e.source {
                // A hello names the node this link now routes to (a newer link wins).
                state.withLock { $0.inboundByNode[source] = id }
                try? peer.link.send(Envelope(protocolTag: .actors, kind: ActorWire.welcome, source: node,
                                             destination: source, payload: ActorWire.introduction(address: address)))
            }
        case ActorWire.welcome:
            let waiting = state.withLock { $0.calls.takeIntroductions(onRoute: id) }
            for w in waiting {
                if case .introduction(let c) = w.waiter {
                    if let n = peer.node { c.resume(returning: n) } else {
                        c.resume(throwing: ActorCallError.peerLost(unknownNode, reason: "the welcome named no node"))
                    }
                }
            }
        default:
            refused(peer, "dropped an actor envelope of unknown kind", ["kind": "\(e.kind)"])
        }
    }

    /// Logs a refused envelope: the first of a link, then the 10th, 100th…
    private func refused(_ peer: PeerLink, _ message: Logger.Message, _ metadata: Logger.Metadata) {
        guard peer.countRefusal() else { return }
        logger.warning(message, metadata: metadata.merging(["link": "\(peer.description)", "refused": "\(peer.refusals.load(ordering: .relaxed))"]) { $1 })
    }

    // MARK: Calls

    private func handleCall(_ e: Envelope, from peer: PeerLink) {
        guard let caller = e.source else {
            refuse(e, over: peer, .invalidCall(actor: ActorID(node: node, local: .number(0), address: address),
                                               target: "", reason: "a call without a source node"))
            return
        }
        var reader = BinaryReader(e.payload)
        let header: CallHeader
        do {
            header = try CallHeader.read(&reader)
        } catch {
            refused(peer, "refused a malformed call", ["caller": "\(caller)", "error": "\(error)"])
            refuse(e, over: peer, .invalidCall(actor: ActorID(node: node, local: .number(0), address: address),
                                               target: "", reason: error.description))
            return
        }
        let actorID = ActorID(node: node, local: header.actor, address: address)
        guard e.destination == nil || e.destination == node else {
            // A call for another incarnation that had this address.
            refuse(e, over: peer, .actorNotFound(ActorID(node: e.destination ?? node, local: header.actor, address: address)))
            return
        }
        accept(InboundCallKey(caller: caller, correlation: e.correlation), header: header, arguments: reader,
               actorID: actorID, budget: e.deadlineBudget, oneWay: e.flags.contains(.oneWay), replyTo: .link(peer),
               refuse: { self.refuse(e, over: peer, $0) })
    }

    /// Queues a call for its actor (FIFO per caller–actor pair), starting it when its pair is
    /// idle; refuses it when the actor does not exist.
    private func accept(_ key: InboundCallKey, header: CallHeader, arguments: BinaryReader, actorID: ActorID,
                        budget: Duration?, oneWay: Bool, replyTo: ReplySink, refuse: (ActorCallError) -> Void) {
        guard let actor = localActor(header.actor) else {
            logger.debug("call to an actor that does not exist", metadata: [
                "actor": "\(actorID)", "target": "\(header.target)", "caller": "\(key.caller)"])
            refuse(.actorNotFound(actorID))
            return
        }
        let pair = CallerActorPair(caller: key.caller, actor: header.actor)
        let deadline = budget.map { clock.now() + $0 }
        let work = InboundWork(key: key, pair: pair, actor: actor, actorID: actorID, header: header,
                               arguments: arguments, budget: budget, deadline: deadline, oneWay: oneWay, replyTo: replyTo)
        let startNow: InboundWork? = state.withLock { s in
            guard !s.isShutDown else { return nil }
            return s.inbound.arrive(pair, .init(key: key, deadline: deadline, work: work))
        }
        if let deadline { scheduleDeadline(deadline) }
        if let startNow { start(startNow) }
    }

    /// Answers a call with a system error without running it (unless it is one-way).
    private func refuse(_ e: Envelope, over peer: PeerLink, _ error: ActorCallError) {
        guard !e.flags.contains(.oneWay) else { return }
        sendReply(.systemError(error), correlation: e.correlation, to: e.source, over: peer)
    }

    private func sendReply(_ reply: Reply, correlation: UInt64, to caller: NodeID?, over peer: PeerLink) {
        let envelope = Envelope(protocolTag: .actors, kind: ActorWire.reply, source: node, destination: caller,
                                correlation: correlation, payload: reply.encode())
        do {
            try peer.link.send(envelope)
        } catch .tooLarge(let size, let limit) {
            // The result is too large for one frame: the caller learns why instead of waiting.
            let small = Reply.systemError(.tooLarge(size: size, limit: limit))
            try? peer.link.send(Envelope(protocolTag: .actors, kind: ActorWire.reply, source: node, destination: caller,
                                         correlation: correlation, payload: small.encode()))
        } catch {
            logger.debug("reply not sent", metadata: ["link": "\(peer.description)", "error": "\(error)"])
        }
    }

    /// Runs a received call in a task of its own (cancellable alone), on the configured
    /// executor; when it ends, the next call of its pair starts.
    private func start(_ work: InboundWork) {
        // Detached: a call runs with none of the task locals of the thread that received it.
        let task: Task<Void, Never>
        if configuration.startsCallsImmediately {
            // Runs here until its first suspension (may finish before the next line).
            task = Task.immediateDetached(executorPreference: configuration.executor) { [self] in
                await self.execute(work)
            }
        } else {
            task = Task.detached(executorPreference: configuration.executor) { [self] in
                await self.execute(work)
            }
        }
        state.withLock { s in
            if !work.finished.load(ordering: .relaxed) { s.running[work.key] = task }
        }
    }

    private func execute(_ work: InboundWork) async {
        metrics.executed()
        let handler = SpindleResultHandler(actor: work.actorID, target: work.header.target)
        var decoder = SpindleInvocationDecoder(header: work.header, reader: work.arguments, system: self)
        do {
            if let budget = work.budget {
                try await withDeadline(budget, clock: clock) {
                    try await run(work.actor, work.header.target, &decoder, handler)
                }
            } else {
                try await run(work.actor, work.header.target, &decoder, handler)
            }
        } catch {
            if handler.reply == nil {
                handler.set(.systemError(.invalidCall(actor: work.actorID, target: work.header.target, reason: "\(error)")))
            }
        }
        var reply = handler.reply ?? .systemError(.invalidCall(actor: work.actorID, target: work.header.target,
                                                               reason: "the function ended without a result"))
        if let deadline = work.deadline, let budget = work.budget, clock.now() >= deadline {
            // Past the deadline the caller has given up (or is about to): whatever the
            // function did — typically throw because the deadline cancelled it — the call
            // timed out, and says so even if this reply beats the caller's own timer.
            reply = .systemError(.timedOut(deadline: budget))
        }
        switch reply {
        case .value, .void:
            break
        case .systemError(let e):
            logger.debug("received call failed", metadata: [
                "actor": "\(work.actorID)", "target": "\(work.header.target)", "caller": "\(work.key.caller)", "error": "\(e)"])
        case .codableError(_, _, let d), .otherError(_, let d):
            logger.debug("received call failed", metadata: [
                "actor": "\(work.actorID)", "target": "\(work.header.target)", "caller": "\(work.key.caller)",
                "error": "\(d)", "cancelled": "\(Task.isCancelled)"])
        }
        if !work.oneWay {
            switch work.replyTo {
            case .link(let peer):
                sendReply(reply, correlation: work.key.correlation, to: work.key.caller, over: peer)
            case .local:
                if let call = state.withLock({ $0.calls.take(work.key.correlation) }) {
                    complete(call, with: reply.encode())
                }
            }
        }
        let next = state.withLock { s -> InboundWork? in
            work.finished.store(true, ordering: .relaxed)
            s.running.removeValue(forKey: work.key)
            return s.inbound.finished(work.key)?.work
        }
        if let next { start(next) }
    }

    private func run<A: DistributedActor>(_ actor: A, _ target: String, _ decoder: inout SpindleInvocationDecoder,
                                          _ handler: SpindleResultHandler) async throws {
        try await executeDistributedTarget(on: actor, target: RemoteCallTarget(target),
                                           invocationDecoder: &decoder, handler: handler)
    }

    /// A call to an actor of this node through a reference resolved as remote: it runs like
    /// a received call (same FIFO, deadline and cancellation), without a link.
    func dispatchLocally(_ payload: [UInt8], callID: UInt64, budget: Duration, oneWay: Bool = false) {
        var reader = BinaryReader(payload)
        let key = InboundCallKey(caller: node, correlation: callID)
        let header: CallHeader
        do {
            header = try CallHeader.read(&reader)
        } catch {
            // Written by this process a moment ago: cannot happen short of a bug.
            if let call = state.withLock({ $0.calls.take(callID) }) { fail(call, .serializationFailed("\(error)")) }
            return
        }
        let actorID = ActorID(node: node, local: header.actor, address: address)
        accept(key, header: header, arguments: reader, actorID: actorID, budget: budget, oneWay: oneWay,
               replyTo: .local) { error in
            if !oneWay, let call = state.withLock({ $0.calls.take(callID) }) { fail(call, error) }
        }
    }

    /// The caller cancelled a call it sent here.
    func cancelInbound(_ key: InboundCallKey) {
        let task: Task<Void, Never>? = state.withLock { s in
            switch s.inbound.cancel(key) {
            case .running: return s.running[key]
            case .queued, .unknown: return nil
            }
        }
        task?.cancel()
    }
}
