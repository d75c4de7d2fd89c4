import SpindleKernel

extension Engine {
    /// Runs one cycle at `now`.
    ///
    /// In order: frees executions reported by the previous poll, drains the ingress lanes
    /// (completions, then the host's control events, then envelopes) and the inbox, matures
    /// timers, expires deadlines and wire requests, checks the watched peers that are due
    /// (heartbeats, liveness, eviction), fires ready ops up to the op budget (bus events start
    /// executions at subscribed sites), then hands out envelopes, app events, bus events and
    /// finished executions.
    mutating func poll(now: MonotonicInstant) -> PollOutcome {
        self.now = max(self.now, now)
        context.now = self.now
        context.bus.now = self.now
        collect()
        var didWork = false

        // 1. Ingress lanes and inbox.
        let (full, oversize) = context.ingress.takeRejections()
        for lane in IngressLane.allCases {
            if let n = full[lane] { context.bus.publish(.ingressRejected(reason: "full (\(lane) lane)", count: n)) }
        }
        if oversize > 0 { context.bus.publish(.ingressRejected(reason: "resultTooLarge", count: oversize)) }
        context.ingress.drain(completions: &completionBuffer, control: &controlBuffer, network: &networkBuffer)
        while let event = completionBuffer.popFirst() {
            didWork = true
            switch event {
            case .completion(let cmd, let outputs): applyCompletion(cmd, .success(outputs))
            case .failure(let cmd, let detail): applyCompletion(cmd, .failure(.failed(detail)))
            default: handleControl(event)
            }
        }
        while let event = controlBuffer.popFirst() {
            didWork = true
            handleControl(event)
        }
        while let event = networkBuffer.popFirst() {
            didWork = true
            if case .envelope(let env) = event { receive(env) } else { handleControl(event) }
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
                guard let p = pending[cmd], case .timer(let outputs, _) = p.kind else { continue }
                applyCompletion(cmd, .success(outputs))
            case .component(let slot, let kind):
                context.siblings.dispatching = slot
                context.siblings.components[slot].timerFired(kind: kind, context: context)
                context.siblings.dispatching = -1
                applySameCycleCompletions()
            }
        }

        // 3. Deadlines of async ops and TTLs of wire requests (both from heaps).
        while let (_, cmd) = deadlines.popDue(now: self.now) {
            guard let p = pending[cmd], p.deadline <= self.now else { continue }
            didWork = true
            applyCompletion(cmd, .failure(.timeout))
        }
        for (_, entry) in context.net.requests.expire(now: self.now) {
            didWork = true
            // The op's own deadline normally fires first; this catches requests whose TTL is
            // shorter than the op deadline.
            if pending[entry.command] != nil { applyCompletion(entry.command, .failure(.timeout)) }
        }
        if deadlines.count > 2 * pending.count + 1024 { rebuildDeadlines() }

        // 4. Watched peers whose check is due: heartbeats, liveness, eviction.
        if checkPeers() { didWork = true }

        // 5. Frontier, within the op budget; bus events start subscribed executions.
        var fired = 0
        let budget = configuration.opBudgetPerPoll
        var published: [BusRecord] = []
        repeat {
            if let installed = program {
                while fired < budget, let (op, slot) = frontier.popFirst() {
                    fire(op, exec: slot, installed)
                    fired += 1
                }
                endDispatch()
            }
            takeBusEvents(into: &published)
            startSubscribedExecutions()
        } while fired < budget && !frontier.isEmpty
        // Executions the subscriptions just started may have published (an execution with
        // nothing to run finishes at once): report those events in this outcome too; their
        // own subscriptions start at the next poll.
        takeBusEvents(into: &published)
        didWork = didWork || fired > 0 || !published.isEmpty

        // 6. Outcome.
        var outcome = PollOutcome()
        outcome.opsFired = fired
        outcome.outbound = context.net.outbound.drain()
        outcome.events = published
        swap(&outcome.appEvents, &appEvents)
        swap(&outcome.finished, &finishedNow)
        swap(&outcome.refusedStarts, &refusedStarts)
        collectNext.append(contentsOf: justFinished)
        justFinished.removeAll(keepingCapacity: true)
        if !frontier.isEmpty || !subscriptionBacklog.isEmpty {
            outcome.status = .budgetExhausted
            outcome.nextDeadline = self.now
        } else {
            outcome.status = didWork || !outcome.outbound.isEmpty || !outcome.refusedStarts.isEmpty ? .worked : .idle
            outcome.nextDeadline = nextWakeup()
        }
        return outcome
    }

    /// Handles an event of the control lane.
    mutating func handleControl(_ event: IngressEvent) {
        switch event {
        case .start(let site, let value):
            do { _ = try start(site: site, value: value) } catch {
                context.bus.publish(.inboundRejected(peer: nil, reason: error.description))
            }
        case .startReserved(let id, let site, let value, let timeout):
            do { _ = try start(site: site, value: value, id: id, timeout: timeout) } catch {
                refusedStarts.append(RefusedStart(id: id, error: error))
                context.bus.publish(.inboundRejected(peer: nil, reason: "\(id): \(error.description)"))
            }
        case .cancel(let id):
            _ = cancel(id)
        case .peerUnreachable(let peer, let reason):
            peerUnreachable(peer, reason: reason)
        case .undeliverable(let envelopes, let reason):
            undeliverable(envelopes, reason: reason)
        case .envelope(let env):
            receive(env)
        case .completion(let cmd, let outputs):
            applyCompletion(cmd, .success(outputs))
        case .failure(let cmd, let detail):
            applyCompletion(cmd, .failure(.failed(detail)))
        }
    }

    /// Moves the bus's pending events into `published` and queues those a program subscribed
    /// to.
    private mutating func takeBusEvents(into published: inout [BusRecord]) {
        let records = context.bus.take()
        guard !records.isEmpty else { return }
        published.reserveCapacity(published.count + records.count)
        for r in records { published.append(BusRecord(at: r.at, event: r.event)) }
        if let p = program, !p.subscriptions.isEmpty {
            for r in records where p.subscriptions[r.event.kind] != nil { subscriptionBacklog.append(r) }
        }
    }

    /// Starts executions for queued subscribed events, at most `opBudgetPerPoll` per poll.
    private mutating func startSubscribedExecutions() {
        guard let p = program, !subscriptionBacklog.isEmpty else { return }
        var started = 0
        while started < configuration.opBudgetPerPoll, let r = subscriptionBacklog.popFirst() {
            for s in p.subscriptions[r.event.kind] ?? [] {
                let slot = beginExecution(inbound: InboundContext(), fromWire: false)
                writeSite(s, .string(r.event.description), exec: slot, p)
                settle(slot)
                started += 1
            }
        }
    }

    /// The earliest time something is due without outside input.
    func nextWakeup() -> MonotonicInstant? {
        var next = context.time.timers.nextDeadline
        if let d = deadlines.nextDeadline { next = min(next ?? d, d) }
        if let r = context.net.requests.nextExpiry { next = min(next ?? r, r) }
        if let m = context.net.monitor.nextDeadline { next = min(next ?? m, m) }
        return next
    }

    private mutating func rebuildDeadlines() {
        var fresh = TimerHeap<CommandID>(capacity: .max)
        for (cmd, p) in pending.sorted(by: { $0.key < $1.key }) { _ = fresh.schedule(at: p.deadline, cmd) }
        deadlines = fresh
    }
}
