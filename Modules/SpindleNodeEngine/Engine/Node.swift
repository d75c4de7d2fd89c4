import SpindleKernel

/// An event-driven node: a program of ops between sites, components at named slots, and an
/// engine driven by `poll(now:)`.
///
/// The node does no I/O and reads no clock: the host delivers envelopes and ingress events,
/// calls `poll(now:)`, and sends the envelopes the outcome lists. That keeps it deterministic
/// (a simulation runs many nodes on one `ManualClock`) and lets a driver bind it to an event
/// loop and any `Transport`.
///
/// ```
///  ingress (any thread) ─┐
///  deliver(envelope) ────┼─▶ poll(now) ─▶ frontier ─▶ dispatch ─▶ outputs ─▶ sites ─┐
///  start(site:value:) ───┘        ▲  timers · deadlines · completions        │       │
///                                 └──────────────────────────────────────────┘       ▼
///                          PollOutcome: outbound envelopes · app events · bus events · finished
/// ```
/// A node is confined to one thread; it is not `Sendable`.
public final class Node {
    public let id: NodeID
    public let configuration: NodeConfiguration
    /// The resource context every dispatch receives.
    public let context: NodeContext
    var engine: Engine

    /// - Parameters:
    ///   - id: the node's identity on the wire.
    ///   - clock: used only for the wall-time part of HLC stamps on outbound envelopes.
    public init(id: NodeID = .generate(), configuration: NodeConfiguration = .init(),
                clock: any SpindleClock = SystemClock()) {
        self.id = id
        self.configuration = configuration
        engine = Engine(id: id, configuration: configuration, clock: clock)
        context = engine.context
    }

    /// The thread-safe queue other threads use to reach the node.
    public var ingress: Ingress { context.ingress }

    /// Installs `component` at `slot`, resolving its dependencies against the components
    /// installed so far (install dependencies first).
    public func install(_ component: any Component, at slot: String) throws(DependencyError) {
        guard context.siblings.slots[slot] == nil else { throw .slotTaken(slot) }
        for dep in component.dependencies {
            guard let i = context.siblings.slots[dep.slot] else { throw .notBound(slot: dep.slot, requiredBy: slot) }
            let bound = context.siblings.components[i]
            guard dep.accepts(bound) else {
                throw .typeMismatch(slot: dep.slot, expected: dep.typeName, found: String(describing: type(of: bound)))
            }
        }
        context.siblings.slots[slot] = context.siblings.components.count
        context.siblings.components.append(component)
        context.siblings.slotNames.append(slot)
    }

    /// Validates `program` against the installed components and installs it.
    public func install(_ program: Program) throws(ProgramError) {
        if let p = engine.program { throw .alreadyInstalled(p.program.name) }
        let installed = try InstalledProgram(program, siblings: context.siblings)
        engine.program = installed
        context.program = installed
    }

    /// Lets programs name `peer` as `name` and records where it can be reached.
    public func addPeer(_ peer: NodeID, name: String? = nil, addresses: [Address] = []) {
        context.peers.addresses.retain(peer, addresses: addresses)
        if let name { context.peers.addresses.setName(name, for: peer) }
    }

    /// Starts an execution with `value` written to `site`; its ops fire at the next poll.
    /// - Parameter timeout: when given, the execution's async ops must finish within it
    ///   (they fail with `timeout` otherwise) and its wire calls carry what is left of it.
    /// - Throws: `NodeError` when no program is installed, the site does not exist or the
    ///   value does not fit the site's type.
    @discardableResult
    public func start(site: String, value: Value, timeout: Duration? = nil) throws(NodeError) -> ExecID {
        try engine.start(site: site, value: value, timeout: timeout)
    }

    /// Cancels a running execution: its pending async ops fail with `cancelled` (wire calls
    /// release their peer slot), nothing more of it fires, and it finishes with
    /// `cancelled == true` at this poll. Returns false when it is not running.
    @discardableResult
    public func cancel(_ execution: ExecID) -> Bool {
        engine.cancel(execution)
    }

    /// Hands the node an envelope received on its own thread; it is processed at the next poll.
    public func deliver(_ envelope: Envelope) {
        engine.inbox.append(envelope)
    }

    /// Runs one cycle at `now` (see `Engine.poll`).
    public func poll(now: MonotonicInstant) -> PollOutcome {
        engine.poll(now: now)
    }

    /// A finished execution, readable until the poll after the one that finished it.
    public func execution(_ id: ExecID) -> FinishedExecution? { engine.readable[id] }

    /// Executions currently running.
    public var liveExecutions: Int { engine.execSlotByID.count - engine.readable.count }

    /// Async ops waiting for completion.
    public var pendingAsyncCount: Int { engine.pending.count }

    /// The smoothed round trip to `peer` for calls of `endpoint` (`"op NAME"` or `"site NAME"`),
    /// as the node measures it to size wire deadlines; nil before the first answer.
    public func roundTrip(to peer: NodeID, endpoint: String) -> RoundTrip? {
        guard let e = context.net.rtt.estimate(for: RttTarget(peer: peer, endpoint: endpoint)), e.samples > 0 else { return nil }
        return RoundTrip(smoothed: .nanoseconds(Int64(e.srtt)), variation: .nanoseconds(Int64(e.rttvar)), samples: e.samples)
    }

    /// A measured round trip (RFC 6298 smoothing).
    public struct RoundTrip: Sendable, Equatable {
        /// The smoothed round-trip time.
        public var smoothed: Duration
        /// Its mean deviation.
        public var variation: Duration
        /// Answers it was computed from.
        public var samples: Int
    }
}

extension Engine {
    mutating func start(site: String, value: Value, id: ExecID? = nil, timeout: Duration? = nil) throws(NodeError) -> ExecID {
        guard let p = program else { throw .noProgram }
        guard let s = p.siteIndex[site] else { throw .unknownSite(site) }
        let type = p.sites[s].type
        guard type.accepts(value) else { throw .typeMismatch(site: site, expected: type, found: value.type) }
        let slot = beginExecution(inbound: InboundContext(), fromWire: false, id: id)
        if let timeout { execs[slot].deadline = now + timeout }
        writeSite(s, value, exec: slot, p)
        settle(slot)
        return execs[slot].id
    }
}
