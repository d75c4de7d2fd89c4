import SpindleKernel

extension Engine {
    /// Resolves a program's peer name and checks policy and backoff; fails the op otherwise.
    mutating func usablePeer(_ name: String, op: Int, slot: Int) -> NodeID? {
        guard let peer = context.peers.addresses.resolve(name) else {
            failOp(op, slot, .peerUnavailable("unknown peer `\(name)`"))
            return nil
        }
        guard context.peers.governor.isAllowed(peer) else {
            failOp(op, slot, .peerUnavailable("\(peer) is blocked by policy"))
            return nil
        }
        if context.peers.backoff.isBackedOff(peer, now: now) {
            let until = context.peers.backoff.retryAt(peer).map { "\($0)" } ?? "later"
            failOp(op, slot, .peerUnavailable("\(peer) is backed off until \(until)"))
            return nil
        }
        return peer
    }

    /// Sends a request for `target` on `peer` and parks the op until the reply, its deadline,
    /// or the execution's inbound deadline.
    mutating func wireCall(peerName: String, target: WireTarget, timeout: Duration?, chain: ChainHop?,
                  op: Int, slot: Int, value: Value) -> DispatchResult {
        guard let peer = usablePeer(peerName, op: op, slot: slot) else { return .absorb }
        guard context.peers.gate.tryAcquire(peer) else {
            failOp(op, slot, .peerUnavailable("\(context.peers.gate.limit) requests already in flight to \(peer)"))
            return .absorb
        }
        let endpoint = target.description
        var budget: Duration
        if let timeout {
            budget = timeout
        } else {
            let (estimate, tier) = context.net.rtt.estimate(RttTarget(peer: peer, endpoint: endpoint), chain: chain,
                                                             staticDefault: configuration.defaultWireTimeout)
            budget = tier == .staticDefault ? estimate
                : .nanoseconds(Int64(Double(estimate.nanosecondsClamped) * configuration.wireBudgetFactor))
        }
        if let d = execs[slot].deadline {
            let left = d - now
            guard left > .zero else {
                context.peers.gate.release(peer)
                failOp(op, slot, .timeout)
                return .absorb
            }
            budget = min(budget, left)
        }
        let cmd = context.allocateCommand()
        let entry = RequestTracker.Entry(command: cmd, peer: peer, endpoint: endpoint, sentAt: now,
                                         expiresAt: now + budget, chain: chain)
        guard let request = context.net.requests.begin(entry) else {
            context.peers.gate.release(peer)
            failOp(op, slot, .capacity("\(context.net.requests.capacity) wire requests already in flight"))
            return .absorb
        }
        send(to: peer, kind: .request, correlation: request, budget: budget,
             payload: WireMessage.encodeCall(target, [value]))
        nextPendingKind = .wire(request: request, peer: peer)
        return .async(cmd)
    }

    /// Answers the request that started `e`.
    mutating func reply(_ slot: Int, _ values: [Value]) {
        guard execs[slot].awaitingReply, let peer = execs[slot].inbound.sourcePeer,
              let request = execs[slot].inbound.requestID else { return }
        execs[slot].awaitingReply = false
        send(to: peer, kind: .response, correlation: request, budget: nil,
             payload: WireMessage.encodeValues(values), flags: .response)
    }

    /// Answers the request that started `e` with an error.
    mutating func replyError(_ slot: Int, _ text: String) {
        guard execs[slot].awaitingReply, let peer = execs[slot].inbound.sourcePeer,
              let request = execs[slot].inbound.requestID else { return }
        execs[slot].awaitingReply = false
        sendError(to: peer, request: request, text)
    }

    mutating func sendError(to peer: NodeID, request: UInt64, _ text: String) {
        send(to: peer, kind: .response, correlation: request, budget: nil,
             payload: WireMessage.encodeText(Ingress.truncate(text, toBytes: configuration.failureDetailCap)),
             flags: [.response, .error])
    }

    /// Handles one inbound envelope.
    mutating func receive(_ env: Envelope) {
        guard env.protocolTag == .nodeEngine, let kind = WireKind(rawValue: env.kind) else {
            context.bus.publish(.inboundRejected(peer: env.source, reason: "not a node-engine envelope (\(env.protocolTag), kind \(env.kind))"))
            return
        }
        guard let source = env.source else {
            context.bus.publish(.inboundRejected(peer: nil, reason: "envelope without a source"))
            return
        }
        hlc.receive(env.stamp)
        guard context.peers.governor.isAllowed(source) else {
            context.bus.publish(.inboundRejected(peer: source, reason: "blocked by policy"))
            return
        }
        if env.sequence != 0 && !context.net.dedup.admit(source: source, sequence: env.sequence, now: now) {
            context.bus.publish(.duplicateDropped(source: source, sequence: env.sequence))
            return
        }
        if case .trusted? = context.net.suspicion.heartbeat(source, at: now) {
            context.bus.publish(.peerTrusted(source))
        }
        if context.peers.governor.observeAlive(source) == .up { context.bus.publish(.peerUp(source)) }

        switch kind {
        case .request, .fill: receiveCall(env, from: source, expectsReply: kind == .request)
        case .response: receiveResponse(env, from: source)
        case .backoffNotice:
            context.peers.backoff.recordFailure(source, now: now)
            context.bus.publish(.backoffNoticeReceived(peer: source))
        }
    }

    /// Refuses an inbound call: counts it on the bus and, when the caller waits for a reply,
    /// answers with an error naming this node.
    private mutating func rejectInbound(_ env: Envelope, from source: NodeID, expectsReply: Bool, _ reason: String) {
        context.bus.publish(.inboundRejected(peer: source, reason: reason))
        if expectsReply { sendError(to: source, request: env.correlation, "\(reason) on \(id)") }
    }

    private mutating func receiveCall(_ env: Envelope, from source: NodeID, expectsReply: Bool) {
        let target: WireTarget, values: [Value]
        do {
            (target, values) = try WireMessage.decodeCall(env.payload)
        } catch {
            context.bus.publish(.wireDecodeFailed(peer: source, detail: error.description))
            if expectsReply { sendError(to: source, request: env.correlation, "undecodable request: \(error)") }
            return
        }
        if liveInboundExecs >= configuration.maxInboundExecutions {
            switch context.peers.backpressure.refused(from: source) {
            case .notify:
                send(to: source, kind: .backoffNotice, correlation: env.correlation, budget: nil, payload: [])
                context.bus.publish(.backoffNoticeSent(peer: source))
            case .silentDrop:
                context.bus.publish(.inboundDroppedSilently(peer: source))
            }
            return
        }
        guard let p = program else {
            rejectInbound(env, from: source, expectsReply: expectsReply, "no program installed")
            return
        }
        let inbound = InboundContext(sourcePeer: source, requestID: expectsReply ? env.correlation : nil,
                                     arrival: now, remainingBudget: env.deadlineBudget)
        switch target {
        case .site(let name):
            guard let s = p.siteIndex[name] else {
                rejectInbound(env, from: source, expectsReply: expectsReply, "unknown site `\(name)`")
                return
            }
            let slot = beginExecution(inbound: inbound, fromWire: true)
            execs[slot].awaitingReply = expectsReply
            writeSite(s, values.first ?? .unit, exec: slot, p)
            settle(slot)
        case .op(let name):
            guard let o = p.opIndex[name] else {
                rejectInbound(env, from: source, expectsReply: expectsReply, "unknown op `\(name)`")
                return
            }
            let slot = beginExecution(inbound: inbound, fromWire: true)
            execs[slot].awaitingReply = expectsReply
            execs[slot].replyOp = o
            let cop = p.ops[o]
            for (i, v) in values.prefix(cop.inputCount).enumerated() { fill(cop.slotBase + i, v, slot, p) }
            settle(slot)
        }
    }

    private mutating func receiveResponse(_ env: Envelope, from source: NodeID) {
        guard let entry = context.net.requests.finish(env.correlation), entry.peer == source else {
            context.bus.publish(.unknownResponse(peer: source, correlation: env.correlation))
            return
        }
        context.peers.gate.release(entry.peer)
        context.peers.backoff.recordSuccess(entry.peer)
        context.net.rtt.observe(RttTarget(peer: entry.peer, endpoint: entry.endpoint), chain: entry.chain,
                                roundTrip: now - entry.sentAt)
        if env.flags.contains(.error) {
            let text = (try? WireMessage.decodeText(env.payload)) ?? "undecodable error text"
            applyCompletion(entry.command, .failure(.remote(text)))
            return
        }
        do {
            let values = try WireMessage.decodeValues(env.payload)
            applyCompletion(entry.command, .success(OpOutputs(values)))
        } catch {
            context.bus.publish(.wireDecodeFailed(peer: source, detail: error.description))
            applyCompletion(entry.command, .failure(.remote("undecodable response: \(error)")))
        }
    }
}
