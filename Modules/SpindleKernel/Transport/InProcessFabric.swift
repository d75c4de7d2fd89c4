import Synchronization

/// The shared state behind one `InProcessTransport`: listeners, open connections, faults and
/// the bookkeeping of delivery tasks.
final class InProcessFabric: Sendable {
    struct State {
        var listeners: [String: @Sendable (any TransportConnection) -> Void] = [:]
        var connections: [UInt64: InProcessConnectionPair] = [:]
        var nextConnectionID: UInt64 = 1
        var faults: FaultState
        var isShutDown = false
        /// Inboxes holding delayed envelopes (for `releaseDue`).
        var delayedInboxes: [ObjectIdentifier: InProcessInbox] = [:]
        var delayTask: Task<Void, Never>?
        var runningDrains = 0
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let state: Mutex<State>
    let configuration: InProcessTransport.Configuration
    /// True while any fault may apply, so the send path skips the lock when none can.
    let faultsActive = Atomic<Bool>(false)

    init(configuration: InProcessTransport.Configuration) {
        self.configuration = configuration
        state = Mutex(State(faults: FaultState(seed: configuration.seed)))
    }

    // MARK: Listening and connecting

    func listen(on address: Address,
                accept: @escaping @Sendable (any TransportConnection) -> Void) throws(TransportError) -> any TransportListener {
        guard case .inproc(let name) = address else {
            throw .unsupportedAddress(address, transport: "in-process")
        }
        let problem: String? = state.withLock { s in
            if s.isShutDown { return "the transport is shut down" }
            if s.listeners[name] != nil { return "\"\(name)\" is already listened on" }
            s.listeners[name] = accept
            return nil
        }
        if let problem { throw .cannotListen(address, problem) }
        return InProcessListener(address: address, name: name, fabric: self)
    }

    func unlisten(_ name: String) {
        _ = state.withLock { $0.listeners.removeValue(forKey: name) }
    }

    func connect(to address: Address, from name: String?) throws(TransportError) -> any TransportConnection {
        guard case .inproc(let target) = address else {
            throw .unsupportedAddress(address, transport: "in-process")
        }
        let result: Result<(InProcessConnectionPair, @Sendable (any TransportConnection) -> Void), TransportError> = state.withLock { s in
            if s.isShutDown { return .failure(.unreachable(address, "the transport is shut down")) }
            guard let accept = s.listeners[target] else {
                return .failure(.unreachable(address, "no listener named \"\(target)\""))
            }
            let id = s.nextConnectionID
            s.nextConnectionID += 1
            let clientName = name ?? "client-\(id)"
            if s.faults.separates(clientName, target) {
                return .failure(.unreachable(address, "\"\(clientName)\" is partitioned from \"\(target)\" (fault injection)"))
            }
            let pair = InProcessConnectionPair(id: id, clientName: clientName, serverName: target, fabric: self)
            s.connections[id] = pair
            return .success((pair, accept))
        }
        let (pair, accept) = try result.get()
        accept(pair.server)
        return pair.client
    }

    // MARK: Sending

    /// Routes one envelope from `end` into its peer's inbox, applying faults.
    func send(_ envelope: Envelope, from end: InProcessConnection) throws(TransportError) {
        var copies = 1
        var due: MonotonicInstant? = nil
        if faultsActive.load(ordering: .relaxed) {
            let decision = state.withLock { s in
                s.faults.decide(from: end.localName, to: end.remoteName)
            }
            switch decision {
            case .drop:
                // Dropped on the wire, but a closed connection still refuses the send.
                if let r = end.outbound.state.withLock({ $0.sendRefusal }) { throw .closed(r) }
                return
            case .deliver(let c, let delay):
                copies = c
                if let delay { due = configuration.clock.now() + delay }
            }
        }
        let mustDrain = try end.outbound.push(envelope, copies: copies, due: due)
        if due != nil { noteDelayed(end.outbound) }
        if mustDrain { scheduleDrain(end.outbound) }
    }

    // MARK: Delivery

    func scheduleDrain(_ inbox: InProcessInbox) {
        switch configuration.delivery {
        case .inline:
            inbox.drain()
        case .asynchronous:
            state.withLock { $0.runningDrains += 1 }
            Task {
                inbox.drain()
                self.drainFinished()
            }
        }
    }

    private func drainFinished() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.runningDrains -= 1
            guard s.runningDrains == 0 else { return [] }
            let w = s.drainWaiters
            s.drainWaiters = []
            return w
        }
        for w in waiters { w.resume() }
    }

    // MARK: Delays

    private func noteDelayed(_ inbox: InProcessInbox) {
        let startTask = state.withLock { s in
            s.delayedInboxes[ObjectIdentifier(inbox)] = inbox
            guard configuration.delayRelease == .automatic, s.delayTask == nil, !s.isShutDown else { return false }
            return true
        }
        if startTask { startDelayTask() }
    }

    private func startDelayTask() {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                self.releaseDue()
                let (next, done): (MonotonicInstant?, Bool) = self.state.withLock { s in
                    let nexts = s.delayedInboxes.values.compactMap { $0.state.withLock { $0.delayed.first?.due } }
                    if nexts.isEmpty { s.delayTask = nil; return (nil, true) }
                    return (nexts.min(), false)
                }
                if done { return }
                let wait = (next ?? self.configuration.clock.now()) - self.configuration.clock.now()
                let ns = max(wait.nanosecondsClamped, 50_000)
                try? await Task.sleep(for: .nanoseconds(ns))
            }
        }
        state.withLock { s in
            if s.delayTask == nil { s.delayTask = task } else { task.cancel() }
        }
    }

    @discardableResult
    func releaseDue() -> Int {
        let now = configuration.clock.now()
        let inboxes = state.withLock { Array($0.delayedInboxes.values) }
        var released = 0
        for inbox in inboxes {
            let r = inbox.releaseDue(now: now)
            released += r.moved
            if r.next == nil {
                state.withLock { _ = $0.delayedInboxes.removeValue(forKey: ObjectIdentifier(inbox)) }
                // A delay may have been added between the two locks: re-register if so.
                if inbox.state.withLock({ !$0.delayed.isEmpty }) {
                    state.withLock { $0.delayedInboxes[ObjectIdentifier(inbox)] = inbox }
                }
            }
            if r.drain { scheduleDrain(inbox) }
        }
        return released
    }

    // MARK: Faults

    func updateFaults(_ body: (inout FaultState) -> Void) {
        state.withLock { s in
            body(&s.faults)
            faultsActive.store(s.faults.isActive, ordering: .relaxed)
        }
    }

    func disconnect(_ a: String, _ b: String?) -> Int {
        let pairs = state.withLock { s in
            let hit = s.connections.values.filter { p in
                if let b { return EndpointPair(p.clientName, p.serverName) == EndpointPair(a, b) }
                return p.clientName == a || p.serverName == a
            }
            s.faults.stats.disconnected += hit.count
            return hit
        }
        for p in pairs { p.breakBoth(.transportError("fault injection: disconnected")) }
        return pairs.count
    }

    func forget(_ id: UInt64) {
        _ = state.withLock { $0.connections.removeValue(forKey: id) }
    }

    // MARK: Shutdown

    func shutdown() async {
        let (pairs, task) = state.withLock { s in
            s.isShutDown = true
            s.listeners = [:]
            let t = s.delayTask
            s.delayTask = nil
            s.delayedInboxes = [:]
            return (Array(s.connections.values), t)
        }
        task?.cancel()
        for p in pairs { p.breakBoth(.transportShutdown) }
        await task?.value
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s in
                if s.runningDrains == 0 { return true }
                s.drainWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}
