import SpindleKernel

extension Node {
    /// Runs one cycle at `now`.
    ///
    /// In order: frees executions reported by the previous poll, drains the ingress queue and
    /// the inbox, matures timers, expires deadlines and wire requests, re-evaluates peer
    /// suspicion, fires ready ops up to the op budget (bus events start executions at
    /// subscribed sites), then hands out envelopes, app events, bus events and finished
    /// executions.
    public func poll(now: MonotonicInstant) -> PollOutcome {
        self.now = max(self.now, now)
        context.now = self.now
        context.bus.now = self.now
        collect()
        var didWork = false

        // 1. Ingress and inbox.
        let (full, oversize) = context.ingress.takeRejections()
        if full > 0 { context.bus.publish(.ingressRejected(reason: "full", count: full)) }
        if oversize > 0 { context.bus.publish(.ingressRejected(reason: "resultTooLarge", count: oversize)) }
        context.ingress.drain(into: &ingressBuffer)
        while let event = ingressBuffer.popFirst() {
            didWork = true
            switch event {
            case .completion(let cmd, let outputs): applyCompletion(cmd, .success(outputs))
            case .failure(let cmd, let detail): applyCompletion(cmd, .failure(.failed(detail)))
            case .envelope(let env): receive(env)
            case .start(let site, let value):
                do { try start(site: site, value: value) } catch {
                    context.bus.publish(.inboundRejected(peer: nil, reason: error.description))
                }
            }
        }
        while let env = inbox.popFirst() {
            didWork = true
            receive(env)
        }

        // 2. Timers.
        while let (_, payload) = context.time.timers.popDue(now: self.now) {
            didWork = true
            switch payload {
            case .complete(let cmd):
                guard let p = pending[cmd], case .timer(let outputs) = p.kind else { continue }
                applyCompletion(cmd, .success(outputs))
            case .component(let slot, let kind):
                context.siblings.dispatching = slot
                context.siblings.components[slot].timerFired(kind: kind, context: context)
                context.siblings.dispatching = -1
                applySameCycleCompletions()
            }
        }

        // 3. Deadlines of async ops and TTLs of wire requests.
        while let (_, cmd) = deadlines.popDue(now: self.now) {
            guard let p = pending[cmd], p.deadline <= self.now else { continue }
            didWork = true
            applyCompletion(cmd, .failure(.timeout))
        }
        for (requestID, entry) in context.net.requests.expire(now: self.now) {
            didWork = true
            // The op's own deadline normally fires first; this catches requests whose TTL is
            // shorter than the op deadline.
            if pending[entry.command] != nil { applyCompletion(entry.command, .failure(.timeout)) }
            _ = requestID
        }
        if deadlines.count > 2 * pending.count + 1024 { rebuildDeadlines() }

        // 4. Suspicion.
        for change in context.net.suspicion.evaluate(at: self.now) {
            if case .suspected(let peer) = change {
                context.bus.publish(.peerSuspected(peer))
                if context.peers.governor.observeSuspicion(peer, suspected: true) == .down {
                    context.bus.publish(.peerDown(peer))
                }
            }
        }

        // 5. Frontier, within the op budget; bus events start subscribed executions.
        var fired = 0
        let budget = configuration.opBudgetPerPoll
        var published: [BusRecord] = []
        repeat {
            while fired < budget, let (op, slot) = frontier.popFirst() {
                fire(op, exec: slot)
                fired += 1
            }
            let records = context.bus.take()
            published.reserveCapacity(published.count + records.count)
            for r in records { published.append(BusRecord(at: r.at, event: r.event)) }
            if let p = program, !p.subscriptions.isEmpty {
                for r in records {
                    guard let sites = p.subscriptions[r.event.kind] else { continue }
                    for s in sites {
                        let slot = beginExecution(inbound: InboundContext(), fromWire: false)
                        writeSite(s, .string(r.event.description), exec: slot)
                        settle(slot)
                    }
                }
            }
        } while fired < budget && !frontier.isEmpty
        didWork = didWork || fired > 0 || !published.isEmpty

        // 6. Outcome.
        var outcome = PollOutcome()
        outcome.opsFired = fired
        outcome.outbound = context.net.outbound.drain()
        outcome.events = published
        swap(&outcome.appEvents, &appEvents)
        swap(&outcome.finished, &finishedNow)
        collectNext.append(contentsOf: justFinished)
        justFinished.removeAll(keepingCapacity: true)
        if !frontier.isEmpty {
            outcome.status = .budgetExhausted
            outcome.nextDeadline = self.now
        } else {
            outcome.status = didWork || !outcome.outbound.isEmpty ? .worked : .idle
            outcome.nextDeadline = nextWakeup()
        }
        return outcome
    }

    /// The earliest time something is due without outside input.
    func nextWakeup() -> MonotonicInstant? {
        var next = context.time.timers.nextDeadline
        if let d = deadlines.nextDeadline { next = min(next ?? d, d) }
        if let r = context.net.requests.nextExpiry { next = min(next ?? r, r) }
        return next
    }

    private func rebuildDeadlines() {
        var fresh = TimerHeap<CommandID>(capacity: .max)
        for (cmd, p) in pending.sorted(by: { $0.key < $1.key }) { _ = fresh.schedule(at: p.deadline, cmd) }
        deadlines = fresh
    }
}
