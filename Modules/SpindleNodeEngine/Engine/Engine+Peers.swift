import SpindleKernel

extension Engine {
    /// Something valid arrived from `peer`. Feeds the failure detector and the governor only
    /// for peers this node watches (calls), at most once per heartbeat interval, so the
    /// detector sees a regular rhythm and strangers are never judged.
    mutating func heard(_ peer: NodeID) {
        guard context.net.monitor.heard(peer, now: now) else { return }
        if case .trusted? = context.net.suspicion.heartbeat(peer, at: now) {
            context.bus.publish(.peerTrusted(peer))
        }
        if context.peers.governor.observeAlive(peer) == .up { context.bus.publish(.peerUp(peer)) }
    }

    /// Checks the watched peers whose check is due: forgets those idle for
    /// `peerIdleTimeout`, declares down those past the liveness bound or suspected by φ, sends
    /// a heartbeat to those not heard from for half an interval. Returns whether any was due.
    mutating func checkPeers() -> Bool {
        var any = false
        let interval = configuration.heartbeatInterval
        while let (peer, w) = context.net.monitor.nextDue(now: now) {
            any = true
            if now - w.lastUsed >= configuration.peerIdleTimeout && context.peers.gate.inFlight(to: peer) == 0 {
                evict(peer)
                continue
            }
            var suspected = false
            if now - w.lastHeard >= configuration.livenessBound {
                if !context.net.suspicion.isSuspected(peer) {
                    context.net.suspicion.suspect(peer)
                    context.bus.publish(.peerSuspected(peer))
                }
                suspected = true
            } else if case .suspected? = context.net.suspicion.check(peer, at: now) {
                context.bus.publish(.peerSuspected(peer))
                suspected = true
            }
            if suspected, context.peers.governor.observeSuspicion(peer, suspected: true) == .down {
                declareDown(peer)
            }
            var sent: MonotonicInstant? = nil
            if now - w.lastHeard >= interval / 2 {
                heartbeatNumber &+= 1
                send(to: peer, kind: .heartbeat, correlation: heartbeatNumber, budget: nil, payload: [])
                sent = now
            }
            context.net.monitor.rearm(peer, at: now + interval, heartbeatSent: sent)
        }
        return any
    }

    /// `peer` is down: says so on the bus and fails every call in flight to it at once.
    mutating func declareDown(_ peer: NodeID) {
        context.bus.publish(.peerDown(peer))
        failCalls(to: peer, .peerDown(peer))
    }

    /// Fails every call in flight to `peer` with `reason`.
    mutating func failCalls(to peer: NodeID, _ reason: OpFailureReason) {
        for (_, entry) in context.net.requests.requests(to: peer) where pending[entry.command] != nil {
            applyCompletion(entry.command, .failure(reason))
        }
    }

    /// Drops every per-peer record of an idle peer (its address book entry stays).
    mutating func evict(_ peer: NodeID) {
        context.net.monitor.forget(peer)
        context.net.suspicion.forget(peer)
        context.net.rtt.forget(peer: peer)
        context.peers.governor.forget(peer)
        if !context.peers.backoff.isBackedOff(peer, now: now) { context.peers.backoff.forget(peer) }
        context.peers.gate.forget(peer)
        context.peers.backpressure.forget(peer)
        context.bus.publish(.peerEvicted(peer))
    }

    /// The host could not connect to `peer`: back it off and count the failure; enough of them
    /// declare it down (which fails its calls).
    mutating func peerUnreachable(_ peer: NodeID, reason: String) {
        context.bus.publish(.peerUnreachable(peer: peer, reason: reason))
        context.peers.backoff.recordFailure(peer, now: now)
        if context.peers.governor.observeFailure(peer) == .down { declareDown(peer) }
    }

    /// Envelopes this node sent came back undelivered: the calls they carried fail now.
    mutating func undeliverable(_ envelopes: [Envelope], reason: String) {
        var byPeer: [NodeID: Int] = [:]
        for env in envelopes where env.source == id {
            guard let peer = env.destination else { continue }
            byPeer[peer, default: 0] += 1
            guard env.kind == WireKind.request.rawValue,
                  let entry = context.net.requests.entry(env.correlation), entry.peer == peer,
                  pending[entry.command] != nil else { continue }
            applyCompletion(entry.command, .failure(.unreachable(peer, reason)))
        }
        for (peer, n) in byPeer.sorted(by: { $0.key < $1.key }) {
            context.bus.publish(.undeliverable(peer: peer, count: n, reason: reason))
        }
    }

    /// Cancels a running execution (see `Node.cancel`).
    mutating func cancel(_ execution: ExecID) -> Bool {
        guard let slot = execSlotByID[execution], execs[slot].live else { return false }
        execs[slot].cancelled = true
        if !frontier.isEmpty {
            let before = frontier.count
            frontier.removeAll { $0.exec == slot }
            execs[slot].outstanding -= before - frontier.count
            for i in execs[slot].queued.indices { execs[slot].queued[i] = false }
        }
        let commands = pending.filter { $0.value.execID == execution }.map(\.key).sorted()
        for cmd in commands { applyCompletion(cmd, .failure(.cancelled)) }
        settle(slot)
        return true
    }
}
