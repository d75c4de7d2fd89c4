import SpindleKernel

extension Engine {
    /// Resolves a program's peer name and checks policy, health and backoff; fails the op
    /// otherwise.
    mutating func usablePeer(_ name: String, op: Int, slot: Int) -> NodeID? {
        guard let peer = context.peers.addresses.resolve(name) else {
            failOp(op, slot, .peerUnavailable("unknown peer `\(name)`"))
            return nil
        }
        guard context.peers.governor.isAllowed(peer) else {
            failOp(op, slot, .peerUnavailable("\(peer) is blocked by policy"))
            return nil
        }
        if context.peers.governor.status(of: peer) == .down {
            // Still watched (heartbeats go on), so the peer comes back up when it answers.
            context.net.monitor.use(peer, now: now, interval: configuration.heartbeatInterval)
            failOp(op, slot, .peerDown(peer))
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
    /// or the execution's deadline.
    mutating func wireCall(peerName: String, target: WireTarget, timeout: Duration?, chain: ChainHop?,
                           op: Int, slot: Int, payload: [UInt8]) -> DispatchResult {
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
        if context.net.monitor.use(peer, now: now, interval: configuration.heartbeatInterval) {
            // First call to this peer (or first since it was evicted): its detector history
            // starts now.
            _ = context.net.suspicion.heartbeat(peer, at: now)
        }
        send(to: peer, kind: .request, correlation: request, budget: budget, payload: payload)
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
        if let bound = configuration.maximumClockDrift {
            do throws(HLCDriftError) {
                try hlc.receive(env.stamp, maximumDrift: bound)
            } catch {
                refuseDrifting(env, kind: kind, from: source, error)
                return
            }
        } else {
            hlc.receive(env.stamp)
        }
        guard context.peers.governor.isAllowed(source) else {
            context.bus.publish(.inboundRejected(peer: source, reason: "blocked by policy"))
            return
        }
        if env.sequence != 0 && !context.net.dedup.admit(source: source, sequence: env.sequence, now: now) {
            context.bus.publish(.duplicateDropped(source: source, sequence: env.sequence))
            return
        }
        heard(source)

        switch kind {
        case .request, .fill: receiveCall(env, from: source, expectsReply: kind == .request)
        case .response: receiveResponse(env, from: source)
        case .backoffNotice: receiveBackoffNotice(env, from: source)
        case .heartbeat: send(to: source, kind: .heartbeatAck, correlation: env.correlation, budget: nil, payload: [])
        case .heartbeatAck: break
        }
    }

    /// An envelope whose HLC stamp is too far ahead: refused, and whoever waits for it learns
    /// why (a request's sender from an error reply; a response's caller at once).
    private mutating func refuseDrifting(_ env: Envelope, kind: WireKind, from source: NodeID, _ error: HLCDriftError) {
        let reason = "refused: \(error)"
        context.bus.publish(.inboundRejected(peer: source, reason: reason))
        switch kind {
        case .request: sendError(to: source, request: env.correlation, "\(reason) on \(id)")
        case .response:
            if let entry = context.net.requests.entry(env.correlation), entry.peer == source, pending[entry.command] != nil {
                applyCompletion(entry.command, .failure(.failed("response from \(source) \(reason)")))
            }
        default: break
        }
    }

    /// Refuses an inbound call: counts it on the bus and, when the caller waits for a reply,
    /// answers with an error naming this node.
    private mutating func rejectInbound(_ env: Envelope, from source: NodeID, expectsReply: Bool, _ reason: String) {
        context.bus.publish(.inboundRejected(peer: source, reason: reason))
        if expectsReply { sendError(to: source, request: env.correlation, "\(reason) on \(id)") }
    }

    private mutating func receiveCall(_ env: Envelope, from source: NodeID, expectsReply: Bool) {
        let call: WireMessage.Call
        do {
            call = try WireMessage.decodeCall(env.payload)
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
        switch call.target {
        case .site(let name):
            guard let s = p.siteIndex[name] else {
                rejectInbound(env, from: source, expectsReply: expectsReply, "unknown site `\(name)`")
                return
            }
            guard call.values.count == 1 else {
                rejectInbound(env, from: source, expectsReply: expectsReply,
                              "a call to site `\(name)` carries one value, not \(call.values.count)")
                return
            }
            let value = call.values[0]
            let type = p.sites[s].type
            guard type.accepts(value) else {
                rejectInbound(env, from: source, expectsReply: expectsReply,
                              "site `\(name)` takes \(type) values, not \(value.type)")
                return
            }
            let slot = beginExecution(inbound: inbound, fromWire: true)
            execs[slot].awaitingReply = expectsReply
            writeSite(s, value, exec: slot, p)
            settle(slot)
        case .op(let name):
            guard let o = p.opIndex[name] else {
                rejectInbound(env, from: source, expectsReply: expectsReply, "unknown op `\(name)`")
                return
            }
            let ports: [Int]
            switch bindRemoteInputs(call, to: o, p) {
            case .success(let bound): ports = bound
            case .failure(let problem):
                rejectInbound(env, from: source, expectsReply: expectsReply, problem.text)
                return
            }
            let slot = beginExecution(inbound: inbound, fromWire: true)
            execs[slot].awaitingReply = expectsReply
            execs[slot].replyOp = o
            let cop = p.ops[o]
            for (i, port) in ports.enumerated() { fill(cop.slotBase + port, call.values[i], slot, p) }
            settle(slot)
        }
    }

    /// Why a remote call's values do not fit the op it names.
    struct BindingProblem: Error {
        var text: String
    }

    /// The input port each value of `call` fills, checked against op `o`'s declared ports:
    /// every name known, every type accepted, every required port and any-of group filled.
    private func bindRemoteInputs(_ call: WireMessage.Call, to o: Int, _ p: InstalledProgram) -> Result<[Int], BindingProblem> {
        let cop = p.ops[o]
        let opName = cop.info.name
        var ports: [Int] = []
        ports.reserveCapacity(call.values.count)
        if let names = call.names {
            for name in names {
                guard let i = cop.info.inputPorts.firstIndex(of: name) else {
                    let known = cop.info.inputPorts.map { "`\($0)`" }.joined(separator: ", ")
                    return .failure(BindingProblem(text: "op `\(opName)` has no input port `\(name)` (its ports: \(known))"))
                }
                guard !ports.contains(i) else {
                    return .failure(BindingProblem(text: "op `\(opName)`: input port `\(name)` is given twice"))
                }
                ports.append(i)
            }
        } else {
            guard call.values.count <= cop.inputCount else {
                return .failure(BindingProblem(text: "op `\(opName)` takes \(cop.inputCount) inputs, not \(call.values.count)"))
            }
            ports = Array(0..<call.values.count)
        }
        for (k, i) in ports.enumerated() {
            let type = cop.inputTypes[i]
            let value = call.values[k]
            guard type.accepts(value) else {
                return .failure(BindingProblem(
                    text: "op `\(opName)`, input port `\(cop.info.inputPorts[i])` takes \(type) values, not \(value.type)"))
            }
        }
        var groupsFilled: Set<Int> = []
        for i in ports where p.slotRole[cop.slotBase + i] >= 0 { groupsFilled.insert(p.slotRole[cop.slotBase + i]) }
        for i in 0..<cop.inputCount {
            let role = p.slotRole[cop.slotBase + i]
            if role == -1 && !ports.contains(i) {
                return .failure(BindingProblem(text: "op `\(opName)`: required input port `\(cop.info.inputPorts[i])` is missing"))
            }
            if role >= 0 && !groupsFilled.contains(role) {
                let group = (0..<cop.inputCount).filter { p.slotRole[cop.slotBase + $0] == role }
                    .map { "`\(cop.info.inputPorts[$0])`" }.joined(separator: ", ")
                return .failure(BindingProblem(text: "op `\(opName)`: none of its any-of input ports \(group) is given"))
            }
        }
        return .success(ports)
    }

    private mutating func receiveResponse(_ env: Envelope, from source: NodeID) {
        // Check the source before taking the entry: a response from anyone else must leave the
        // request (and its peer slot) waiting for the real reply.
        guard let entry = context.net.requests.entry(env.correlation), entry.peer == source else {
            context.bus.publish(.unknownResponse(peer: source, correlation: env.correlation))
            return
        }
        _ = context.net.requests.finish(env.correlation)
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

    /// The peer refused a request because it is overloaded: back it off once and fail that
    /// call now (it was not run), rather than letting it wait out its deadline.
    private mutating func receiveBackoffNotice(_ env: Envelope, from source: NodeID) {
        context.peers.backoff.recordFailure(source, now: now)
        context.bus.publish(.backoffNoticeReceived(peer: source))
        if let entry = context.net.requests.entry(env.correlation), entry.peer == source, pending[entry.command] != nil {
            applyCompletion(entry.command, .failure(.overloaded(source)))
        }
    }
}
