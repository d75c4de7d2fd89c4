import Distributed
import Logging
import SpindleKernel
import Synchronization

/// Who waits for an outbound call.
enum CallWaiter: Sendable {
    case call(CheckedContinuation<Reply, any Error>)
    /// `node(at:)` waiting for a link's `welcome`.
    case introduction(CheckedContinuation<NodeID, any Error>)
}

/// Node id used in errors about a peer whose node is not known (nobody answered).
let unknownNode = NodeID(raw: RawID128(high: 0, low: 0))

/// Marks the calls of the current task as one-way (`ActorMesh.cast`): they are sent with the
/// `oneWay` flag and not waited for.
enum OneWayCalls {
    @TaskLocal static var active = false
}

extension SpindleActorSystem {
    // MARK: remoteCall

    public func remoteCall<Act, Err, Res>(
        on actor: Act, target: RemoteCallTarget, invocation: inout InvocationEncoder,
        throwing: Err.Type, returning: Res.Type
    ) async throws -> Res where Act: DistributedActor, Act.ID == ActorID, Err: Error, Res: Codable {
        guard let reply = try await perform(actor.id, target: target.identifier, invocation: invocation) else {
            throw ActorCallError.sentOneWay
        }
        return try decode(reply, as: Res.self, actor: actor.id, target: target.identifier)
    }

    public func remoteCallVoid<Act, Err>(
        on actor: Act, target: RemoteCallTarget, invocation: inout InvocationEncoder, throwing: Err.Type
    ) async throws where Act: DistributedActor, Act.ID == ActorID, Err: Error {
        guard let reply = try await perform(actor.id, target: target.identifier, invocation: invocation) else { return }
        if case .void = reply { return }
        _ = try decode(reply, as: VoidResult.self, actor: actor.id, target: target.identifier)
    }

    /// Sends a call and waits for its reply; nil for a one-way call (nothing to wait for).
    func perform(_ id: ActorID, target: String, invocation: SpindleInvocationEncoder) async throws(ActorCallError) -> Reply? {
        let oneWay = OneWayCalls.active
        let budget = CallDeadline.current?.remaining ?? configuration.callTimeout
        let (dead, shutDown) = state.withLock { ($0.deadNodes[id.node], $0.isShutDown) }
        if shutDown { throw .systemShutDown }
        if let dead { throw failed(dead, actor: id, target: target) }
        guard budget > .zero else { throw failed(.timedOut(deadline: .zero), actor: id, target: target) }
        metrics.callStarted()
        let payload = invocation.payload(actor: id.local, target: target)
        let peer: PeerLink?
        if id.node == node {
            peer = nil
        } else {
            do { peer = try route(to: id) } catch { throw failed(translate(error, node: id.node), actor: id, target: target) }
        }
        let callID = state.withLock { $0.calls.makeID() }
        if oneWay {
            state.withLock { $0.calls.forget(callID) }
            try sendOneWay(payload, callID: callID, to: id, target: target, over: peer, budget: budget)
            return nil
        }
        let started = clock.now()
        let deadline = started + budget
        do {
            let reply = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<Reply, any Error>) in
                    let call = OutboundCalls<CallWaiter>.Call(
                        id: callID, actor: id, target: target, route: peer?.id ?? 0, deadline: deadline,
                        budget: budget, startedAt: started, waiter: .call(c))
                    guard state.withLock({ $0.calls.register(call) }) else {
                        c.resume(throwing: ActorCallError.cancelled)
                        return
                    }
                    scheduleDeadline(deadline)
                    if let peer {
                        send(call: payload, callID: callID, to: id, over: peer, budget: budget)
                    } else {
                        dispatchLocally(payload, callID: callID, budget: budget)
                    }
                }
            } onCancel: {
                cancelOutbound(callID)
            }
            metrics.callAnswered(after: clock.now() - started)
            return reply
        } catch let e as ActorCallError {
            throw e
        } catch {
            throw .serializationFailed("unexpected failure of call \(target): \(error)")
        }
    }

    private func callEnvelope(_ payload: [UInt8], callID: UInt64, to id: ActorID, budget: Duration, oneWay: Bool) -> Envelope {
        var e = Envelope(protocolTag: .actors, kind: ActorWire.call, flags: oneWay ? [.oneWay] : [],
                         source: node, destination: id.node, correlation: callID, payload: payload)
        e.deadlineBudget = budget
        return e
    }

    /// Sends a registered call; a refused send fails it at once.
    private func send(call payload: [UInt8], callID: UInt64, to id: ActorID, over peer: PeerLink, budget: Duration) {
        do {
            try peer.link.send(callEnvelope(payload, callID: callID, to: id, budget: budget, oneWay: false))
        } catch {
            guard let c = state.withLock({ $0.calls.take(callID) }) else { return }
            fail(c, linkRefusal(error, node: id.node))
        }
    }

    private func sendOneWay(_ payload: [UInt8], callID: UInt64, to id: ActorID, target: String, over peer: PeerLink?,
                            budget: Duration) throws(ActorCallError) {
        guard let peer else {
            dispatchLocally(payload, callID: callID, budget: budget, oneWay: true)
            return
        }
        do {
            try peer.link.send(callEnvelope(payload, callID: callID, to: id, budget: budget, oneWay: true))
        } catch {
            throw failed(linkRefusal(error, node: id.node), actor: id, target: target)
        }
    }

    private func linkRefusal(_ error: ReliableLinkError, node: NodeID) -> ActorCallError {
        switch error {
        case .tooLarge(let size, let limit): return .tooLarge(size: size, limit: limit)
        case .closed: return translate(.peerLost(node, reason: "the link to it is closed"), node: node)
        case .queueFull, .queueBytesFull: return translate(.peerLost(node, reason: "\(error)"), node: node)
        }
    }

    // MARK: Replies

    func handleReply(_ e: Envelope, from peer: PeerLink) {
        let call: OutboundCalls<CallWaiter>.Call? = state.withLock { s in
            // Only the link the call went out on may answer it, and only a call (not an
            // introduction) is answered by a reply.
            guard let c = s.calls.peek(e.correlation), c.route == peer.id, case .call = c.waiter else { return nil }
            return s.calls.take(e.correlation)
        }
        guard let call else {
            logger.debug("reply to no pending call (late or cancelled)", metadata: ["call": "\(e.correlation)"])
            return
        }
        complete(call, with: e.payload)
    }

    /// Completes a call from its reply payload.
    func complete(_ call: OutboundCalls<CallWaiter>.Call, with payload: [UInt8]) {
        let reply: Reply
        do {
            reply = try Reply.decode(payload)
        } catch {
            fail(call, .serializationFailed("reply from \(call.actor.map { "\($0)" } ?? "?"): \(error)"))
            return
        }
        if case .systemError(let e) = reply {
            fail(call, translate(e, node: call.actor?.node ?? unknownNode))
            return
        }
        switch call.waiter {
        case .call(let c):
            if case .codableError = reply { metrics.failed("remote_error") }
            if case .otherError = reply { metrics.failed("remote_error") }
            c.resume(returning: reply)
        case .introduction(let c):
            c.resume(throwing: ActorCallError.serializationFailed("a reply answered an introduction"))
        }
    }

    /// Fails a call with `error`: counted, logged with the actor and target, and the waiter
    /// resumed.
    func fail(_ call: OutboundCalls<CallWaiter>.Call, _ error: ActorCallError) {
        let e = call.actor.map { translate(error, node: $0.node) } ?? error
        metrics.failed(e.kind)
        log(e, actor: call.actor, target: call.target)
        switch call.waiter {
        case .call(let c): c.resume(throwing: e)
        case .introduction(let c): c.resume(throwing: e)
        }
    }

    /// Counts and logs a call that fails before it is sent.
    private func failed(_ error: ActorCallError, actor: ActorID, target: String) -> ActorCallError {
        metrics.failed(error.kind)
        log(error, actor: actor, target: target)
        return error
    }

    private func log(_ error: ActorCallError, actor: ActorID?, target: String) {
        var metadata: Logger.Metadata = ["target": "\(target)", "error": "\(error)"]
        if let actor { metadata["actor"] = "\(actor)" }
        switch error {
        case .peerLost, .procDied, .invalidCall, .serializationFailed, .tooLarge:
            logger.notice("actor call failed", metadata: metadata)
        default:
            logger.debug("actor call failed", metadata: metadata)
        }
    }

    /// A lost node's failure as the actor mesh it belongs to names it, and a node marked
    /// dead fails with its recorded error.
    func translate(_ error: ActorCallError, node: NodeID) -> ActorCallError {
        guard case .peerLost(_, let reason) = error else { return error }
        let (dead, translator) = state.withLock { s in
            (s.deadNodes[node], s.supervisions[node]?.min { $0.key < $1.key }?.value.translate)
        }
        if let dead { return dead }
        return translator?(reason) ?? error
    }

    /// Decodes a value reply, or throws what the function threw.
    func decode<Res: Decodable>(_ reply: Reply, as type: Res.Type, actor: ActorID, target: String) throws -> Res {
        switch reply {
        case .value(let bytes):
            do {
                return try CompactDecoder(userInfo: [.actorSystemKey: self]).decode(Res.self, from: bytes)
            } catch {
                metrics.failed(ActorCallError.serializationFailed("").kind)
                throw ActorCallError.serializationFailed("result of \(target) from \(actor) as \(Res.self): \(error)")
            }
        case .void:
            throw ActorCallError.serializationFailed("\(target) on \(actor) returned nothing, \(Res.self) expected")
        case .codableError(let typeName, let encoded, let description):
            if let t = TypeNames.type(named: typeName) as? any (Error & Decodable).Type,
               let error = try? decodeError(t, from: encoded) {
                throw error
            }
            throw RemoteCallError(actor: actor, target: target, description: description, errorType: typeName)
        case .otherError(let typeName, let description):
            throw RemoteCallError(actor: actor, target: target, description: description, errorType: typeName)
        case .systemError(let e):
            throw e
        }
    }

    private func decodeError<E: Error & Decodable>(_ type: E.Type, from bytes: [UInt8]) throws -> any Error {
        try CompactDecoder(userInfo: [.actorSystemKey: self]).decode(E.self, from: bytes)
    }

    // MARK: Cancellation and deadlines

    /// The caller's task was cancelled: the call fails with `.cancelled` now, and the callee
    /// is told to cancel its execution.
    func cancelOutbound(_ callID: UInt64) {
        guard let call = state.withLock({ $0.calls.cancel(callID) }) else { return }
        fail(call, .cancelled)
        sendCancel(for: call)
    }

    private func sendCancel(for call: OutboundCalls<CallWaiter>.Call) {
        guard let actor = call.actor else { return }
        if call.route == 0 {
            cancelInbound(InboundCallKey(caller: node, correlation: call.id))
            return
        }
        guard let peer = state.withLock({ $0.peers[call.route] }) else { return }
        try? peer.link.send(Envelope(protocolTag: .actors, kind: ActorWire.cancel, source: node,
                                     destination: actor.node, correlation: call.id))
    }

    /// Asks for `expireDeadlines` at `deadline` (with `automaticTicks`).
    func scheduleDeadline(_ deadline: MonotonicInstant) {
        timer?.schedule(at: deadline, clock: clock) { [weak self] in self?.expireDeadlines() }
    }

    /// Fails outbound calls whose deadline passed (telling their callees to stop) and cancels
    /// received calls whose deadline passed.
    func expireDeadlines() {
        let now = clock.now()
        let (calls, dropped, running, next) = state.withLock { s in
            let calls = s.calls.takeExpired(now: now)
            let (dropped, runningKeys) = s.inbound.expire(now: now)
            let running = runningKeys.compactMap { s.running[$0] }
            let next = [s.calls.nextDeadline, s.inbound.nextDeadline].compactMap { $0 }.min()
            return (calls, dropped, running, next)
        }
        for c in calls {
            fail(c, .timedOut(deadline: c.budget))
            sendCancel(for: c)
        }
        if !dropped.isEmpty {
            logger.debug("dropped received calls past their deadline", metadata: ["count": "\(dropped.count)"])
        }
        for t in running { t.cancel() }
        if let next { scheduleDeadline(next) }
    }
}

/// Decodes the (absent) result of a function declared to return nothing when a reply is not
/// `.void`: only errors get this far.
private struct VoidResult: Decodable {}

/// Sleeps until the earliest deadline a system asked for, then calls back: one task per
/// system, restarted only when an earlier deadline arrives.
final class DeadlineTimer: Sendable {
    private struct State {
        var scheduled: MonotonicInstant?
        var task: Task<Void, Never>?
        var cancelled = false
    }
    private let state = Mutex(State())

    func schedule(at deadline: MonotonicInstant, clock: any SpindleClock, fire: @escaping @Sendable () -> Void) {
        state.withLock { s in
            guard !s.cancelled else { return }
            if let current = s.scheduled, current <= deadline { return }
            s.task?.cancel()
            s.scheduled = deadline
            s.task = Task.detached { [weak self] in
                // Sleeps on the system clock; a clock that is not the system's is looked at
                // at least every second.
                let wait = min(max(deadline - clock.now(), .zero), clock is SystemClock ? .seconds(3600) : .seconds(1))
                try? await Task.sleep(for: wait)
                guard !Task.isCancelled, let self else { return }
                let due = self.state.withLock { s -> Bool in
                    guard s.scheduled == deadline else { return false }
                    s.scheduled = nil
                    s.task = nil
                    return true
                }
                if due { fire() }
            }
        }
    }

    func cancel() {
        let t = state.withLock { s -> Task<Void, Never>? in
            s.cancelled = true
            s.scheduled = nil
            defer { s.task = nil }
            return s.task
        }
        t?.cancel()
    }
}
