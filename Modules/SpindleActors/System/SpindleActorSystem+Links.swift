import Logging
import SpindleKernel
import Synchronization

extension SpindleActorSystem {
    // MARK: Opening links

    /// The link to `address`, opened (and introduced with a `hello`) when there is none.
    func outboundLink(to address: Address) throws(ActorCallError) -> PeerLink {
        let created: (PeerLink, Bool)? = state.withLock { s in
            guard !s.isShutDown else { return nil }
            if let id = s.outboundByAddress[address], let p = s.peers[id] { return (p, false) }
            let id = s.nextLinkID
            s.nextLinkID += 1
            let observed = ConnectObservingTransport(transport) { [weak self] result in
                self?.connectOutcome(result, onLink: id)
            }
            // Creating the link starts its first connect task: tracked for deterministic tests.
            let link = activity.tracking {
                ReliableLink.connect(over: observed, to: address, configuration: configuration.effectiveLink,
                                     handler: handler(forLink: id))
            }
            let p = PeerLink(id: id, direction: .outbound(address), link: link)
            s.peers[id] = p
            s.outboundByAddress[address] = id
            return (p, true)
        }
        guard let (peer, isNew) = created else { throw .systemShutDown }
        if isNew {
            try? peer.link.send(Envelope(protocolTag: .actors, kind: ActorWire.hello, source: node,
                                         payload: ActorWire.introduction(address: self.address)))
        }
        return peer
    }

    /// The link a call to `id` goes out on: to its address when it has one, else a link the
    /// node opened to this system.
    func route(to id: ActorID) throws(ActorCallError) -> PeerLink {
        if let address = id.address { return try outboundLink(to: address) }
        let found = state.withLock { s in s.inboundByNode[id.node].flatMap { s.peers[$0] } }
        guard let found else {
            throw .peerLost(id.node, reason: "no route: the id has no address and \(id.node) has no link to this node")
        }
        return found
    }

    func handler(forLink id: UInt64) -> ReliableLink.Handler {
        ReliableLink.Handler(
            onDeliver: { [weak self] e in self?.received(e, onLink: id) },
            onUndeliverable: { [weak self] es, why in self?.undeliverable(es, why, onLink: id) },
            onEvent: { [weak self] ev in self?.linkEvent(ev, onLink: id) })
    }

    /// Registers a link a peer opened; returns its id.
    func registerAccepted(_ link: ReliableLink) -> UInt64 {
        state.withLock { s in
            let id = s.nextLinkID
            s.nextLinkID += 1
            s.peers[id] = PeerLink(id: id, direction: .inbound, link: link)
            return id
        }
    }

    /// Asks who is at `address`: opens (or reuses) the link there and waits for the peer's
    /// `welcome`, within the current deadline or the call timeout.
    /// - Throws: `ActorCallError.peerLost` when nothing answers, `.timedOut`, `.cancelled`.
    public func node(at address: Address) async throws(ActorCallError) -> NodeID {
        let peer = try outboundLink(to: address)
        if let n = peer.node { return n }
        let budget = CallDeadline.current?.remaining ?? configuration.callTimeout
        let callID = state.withLock { $0.calls.makeID() }
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<NodeID, any Error>) in
                    let now = clock.now()
                    let registered = state.withLock { s -> Bool in
                        // The welcome may have come meanwhile.
                        if peer.node != nil { s.calls.forget(callID); return false }
                        return s.calls.register(.init(id: callID, actor: nil, target: "introduction", route: peer.id,
                                                      deadline: now + budget, budget: budget, startedAt: now,
                                                      waiter: .introduction(c)))
                    }
                    if registered {
                        scheduleDeadline(now + budget)
                    } else if let n = peer.node {
                        c.resume(returning: n)
                    } else {
                        c.resume(throwing: ActorCallError.cancelled)
                    }
                }
            } onCancel: {
                cancelOutbound(callID)
            }
        } catch let e as ActorCallError {
            if case .peerLost(unknownNode, let reason) = e { throw .peerLost(unknownNode, reason: "nobody answers at \(address): \(reason)") }
            throw e
        } catch {
            throw .peerLost(unknownNode, reason: "nobody answers at \(address): \(error)")
        }
    }

    /// The id of the actor named `name` on the node listening at `address`.
    public func actorID(named name: String, at address: Address) async throws(ActorCallError) -> ActorID {
        ActorID(node: try await node(at: address), local: .name(name), address: address)
    }

    // MARK: Link events

    func connectOutcome(_ result: Result<Void, TransportError>, onLink id: UInt64) {
        guard let peer = state.withLock({ $0.peers[id] }) else { return }
        switch result {
        case .success:
            peer.connectFailures.store(0, ordering: .relaxed)
        case .failure(let error):
            let n = peer.connectFailures.add(1, ordering: .relaxed).newValue
            guard n >= configuration.connectAttemptsBeforeLost else { return }
            declareLost(peer, reason: "\(n) connects in a row failed, the last with: \(error)", closing: true)
        }
    }

    func linkEvent(_ event: ReliableLinkEvent, onLink id: UInt64) {
        guard let peer = state.withLock({ $0.peers[id] }) else { return }
        switch event {
        case .connected:
            logger.debug("link connected", metadata: ["link": "\(peer.description)"])
        case .peerLost(let why):
            declareLost(peer, reason: why, closing: false)
        case .peerRestarted:
            declareLost(peer, reason: "the peer restarted (a new incarnation ended the session)", closing: false)
        case .peerClosed:
            declareLost(peer, reason: "the peer closed the session", closing: false)
        }
    }

    /// The peer of `peer` is gone: the calls pending on the link fail, the calls received
    /// over it are cancelled; with `closing`, the link is closed and forgotten.
    func declareLost(_ peer: PeerLink, reason: String, closing: Bool) {
        let (calls, dropped, running) = state.withLock { s -> ([OutboundCalls<CallWaiter>.Call], [InboundScheduler<InboundWork>.Entry], [Task<Void, Never>]) in
            let calls = s.calls.takeAll(onRoute: peer.id)
            var dropped: [InboundScheduler<InboundWork>.Entry] = []
            var running: [Task<Void, Never>] = []
            // Calls the node sent over this link cannot be answered any more. (Calls it
            // sent over its own link to this node are that link's business.)
            if peer.direction == .inbound, let node = peer.node {
                let d = s.inbound.dropAll(from: node)
                dropped = d.dropped
                running = d.running.compactMap { s.running[$0] }
            }
            if closing {
                s.peers.removeValue(forKey: peer.id)
                if case .outbound(let a) = peer.direction, s.outboundByAddress[a] == peer.id {
                    s.outboundByAddress.removeValue(forKey: a)
                }
                if let node = peer.node, s.inboundByNode[node] == peer.id { s.inboundByNode.removeValue(forKey: node) }
            }
            return (calls, dropped, running)
        }
        if !calls.isEmpty || closing {
            logger.notice("peer lost", metadata: ["link": "\(peer.description)", "reason": "\(reason)",
                                                  "pending_calls": "\(calls.count)"])
        }
        for c in calls {
            let node = c.actor?.node ?? peer.node ?? unknownNode
            fail(c, .peerLost(node, reason: reason))
        }
        if !dropped.isEmpty {
            logger.debug("dropped calls of a lost caller", metadata: ["count": "\(dropped.count)"])
        }
        for t in running { t.cancel() }
        if closing { peer.link.abort() }
        var lostNodes = Set(calls.compactMap { $0.actor?.node })
        if let node = peer.node { lostNodes.insert(node) }
        for node in lostNodes.sorted() { notifyLost(node, reason: reason) }
    }

    func undeliverable(_ envelopes: [Envelope], _ reason: UndeliverableReason, onLink id: UInt64) {
        let ids = envelopes.filter { $0.kind == ActorWire.call && !$0.flags.contains(.oneWay) }.map(\.correlation)
        guard !ids.isEmpty else { return }
        let (calls, shutDown) = state.withLock { s in (ids.compactMap { s.calls.take($0) }, s.isShutDown) }
        for c in calls {
            if shutDown { fail(c, .systemShutDown); continue }
            let node = c.actor?.node ?? unknownNode
            fail(c, .peerLost(node, reason: "the link returned the call: \(reason)"))
        }
    }

    // MARK: Ticks

    /// With `automaticTicks` off: ticks every link (acks, heartbeats, liveness, reconnects),
    /// closes accepted connections that never said hello, and fails calls whose deadline
    /// passed on the system's clock. With `automaticTicks` on, all of that happens by itself.
    public func tick() {
        for link in linksInOrder() { activity.tracking { link.tick() } }
        listener?.sweep()
        expireDeadlines()
    }

    /// `tick()`, with `settle` awaited after each link's tick: a deterministic test waits
    /// there until the connect task that tick may have started has finished.
    @_spi(Testing)
    public func tick(afterEachLink settle: () async -> Void) async {
        for link in linksInOrder() {
            activity.tracking { link.tick() }
            await settle()
        }
        listener?.sweep()
        expireDeadlines()
    }

    /// Background tasks the system's links started (connects) that have not finished.
    @_spi(Testing)
    public var linkTasksInFlight: Int { activity.live }

    /// The links in the order they were created.
    private func linksInOrder() -> [ReliableLink] {
        state.withLock { s in s.peers.values.sorted { $0.id < $1.id }.map(\.link) }
    }
}
