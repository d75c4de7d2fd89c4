import DequeModule
import Logging
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
    var program: InstalledProgram?
    var logger: Logger

    // Executions: a slab indexed densely, with a free list and a pool of reusable states.
    var execs: [Execution?] = []
    var freeExecSlots: [Int] = []
    var execPool: [Execution] = []
    var execSlotByID: [ExecID: Int] = [:]
    var nextExec: UInt64 = 1
    var liveInboundExecs = 0

    /// Ready (op, execution slot) pairs in firing order.
    var frontier = Deque<(op: Int, exec: Int)>()
    var pending: [CommandID: PendingOp] = [:]
    var deadlines: TimerHeap<CommandID>
    var ingressBuffer = Deque<IngressEvent>()
    var inbox = Deque<Envelope>()

    // What the current poll produces.
    var appEvents: [AppEvent] = []
    var finishedNow: [FinishedExecution] = []
    var readable: [ExecID: FinishedExecution] = [:]
    /// Slots finished since the last outcome, and those reported in it (freed next poll).
    var justFinished: [Int] = []
    var collectNext: [Int] = []
    var sequence: UInt64 = 0
    let hlc: HybridLogicalClock
    var now: MonotonicInstant = .zero
    var nextPendingKind: PendingOp.Kind = .component

    /// - Parameters:
    ///   - id: the node's identity on the wire.
    ///   - clock: used only for the wall-time part of HLC stamps on outbound envelopes.
    public init(id: NodeID = .generate(), configuration: NodeConfiguration = .init(),
                clock: any SpindleClock = SystemClock()) {
        self.id = id
        self.configuration = configuration
        context = NodeContext(selfID: id, configuration: configuration)
        deadlines = TimerHeap(capacity: .max)
        hlc = HybridLogicalClock(clock: clock)
        logger = configuration.logger
        logger[metadataKey: "node"] = "\(id)"
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
        if let p = self.program { throw .alreadyInstalled(p.program.name) }
        let installed = try InstalledProgram(program, siblings: context.siblings)
        self.program = installed
        context.program = installed
    }

    /// Lets programs name `peer` as `name` and records where it can be reached.
    public func addPeer(_ peer: NodeID, name: String? = nil, addresses: [Address] = []) {
        context.peers.addresses.retain(peer, addresses: addresses)
        if let name { context.peers.addresses.setName(name, for: peer) }
    }

    /// Starts an execution with `value` written to `site`; its ops fire at the next poll.
    @discardableResult
    public func start(site: String, value: Value) throws(NodeError) -> ExecID {
        guard let p = program else { throw .noProgram }
        guard let s = p.siteIndex[site] else { throw .unknownSite(site) }
        let slot = beginExecution(inbound: InboundContext(), fromWire: false)
        writeSite(s, value, exec: slot)
        settle(slot)
        return execs[slot]!.id
    }

    /// Hands the node an envelope received on its own thread; it is processed at the next poll.
    public func deliver(_ envelope: Envelope) {
        inbox.append(envelope)
    }

    /// A finished execution, readable until the poll after the one that finished it.
    public func execution(_ id: ExecID) -> FinishedExecution? { readable[id] }

    /// Executions currently running.
    public var liveExecutions: Int { execSlotByID.count - readable.count }

    /// Async ops waiting for completion.
    public var pendingAsyncCount: Int { pending.count }

    // MARK: Executions

    func beginExecution(inbound: InboundContext, fromWire: Bool) -> Int {
        let p = program!
        let e = execPool.popLast() ?? Execution(program: p)
        e.id = ExecID(nextExec)
        nextExec &+= 1
        e.live = true
        e.startedAt = now
        e.inbound = inbound
        e.fromWire = fromWire
        if let budget = inbound.remainingBudget { e.deadline = (inbound.arrival ?? now) + budget }
        let slot: Int
        if let s = freeExecSlots.popLast() {
            slot = s
            execs[s] = e
        } else {
            slot = execs.count
            execs.append(e)
        }
        execSlotByID[e.id] = slot
        if fromWire { liveInboundExecs += 1 }
        for op in p.sourceOps { enqueue(op, exec: slot, e) }
        return slot
    }

    @inline(__always)
    func enqueue(_ op: Int, exec slot: Int, _ e: Execution) {
        e.queued[op] = true
        e.outstanding += 1
        frontier.append((op, slot))
    }

    /// Finishes the execution when nothing of it is ready or pending.
    func settle(_ slot: Int) {
        guard let e = execs[slot], e.live, e.outstanding == 0 else { return }
        e.live = false
        if e.awaitingReply { replyError(e, "execution finished without replying") }
        if e.fromWire {
            liveInboundExecs -= 1
            if liveInboundExecs < configuration.maxInboundExecutions && context.peers.backpressure.isOverloaded {
                context.peers.backpressure.relieved()
            }
        }
        let p = program!
        var results: [String: [Value]] = [:]
        for (site, value) in e.results { results[p.sites[site].name, default: []].append(value) }
        let done = FinishedExecution(id: e.id, results: results, startedAt: e.startedAt, finishedAt: now, failures: e.failures)
        finishedNow.append(done)
        readable[e.id] = done
        justFinished.append(slot)
        context.bus.publish(.executionFinished(e.id))
    }

    /// Frees executions whose results the host has had one poll to read.
    func collect() {
        for slot in collectNext {
            guard let e = execs[slot] else { continue }
            readable[e.id] = nil
            execSlotByID[e.id] = nil
            context.syscalls.deadlineMatchFired = context.syscalls.deadlineMatchFired.filter { $0.execution != e.id }
            e.reset()
            execs[slot] = nil
            freeExecSlots.append(slot)
            if execPool.count < 64 { execPool.append(e) }
        }
        collectNext.removeAll(keepingCapacity: true)
    }

    // MARK: Sites and slots

    /// Writes `value` to site `s` in execution `slot`: fills every consumer's input slot, or
    /// records it as a result when the site is a sink.
    @inline(__always)
    func writeSite(_ s: Int, _ value: Value, exec slot: Int) {
        let p = program!
        let e = execs[slot]!
        let consumers = p.sites[s].consumers
        if consumers.isEmpty {
            e.results.append((s, value))
            return
        }
        for input in consumers { fill(input, value, e, slot, p) }
    }

    @inline(__always)
    func fill(_ input: Int, _ value: Value, _ e: Execution, _ slot: Int, _ p: InstalledProgram) {
        let op = p.slotOp[input]
        if e.slots[input] == nil {
            let role = p.slotRole[input]
            if role == -1 {
                e.required[op] &+= 1
            } else if role >= 0 {
                if e.groupHits[role] == 0 { e.groupsSatisfied[op] &+= 1 }
                e.groupHits[role] &+= 1
            }
        } else {
            context.bus.publish(.slotOverwritten(op: p.ops[op].info.name, port: p.slotPortName[input]))
        }
        e.slots[input] = value
        if !e.queued[op] && e.required[op] == p.ops[op].requiredCount && e.groupsSatisfied[op] == p.ops[op].groupCount {
            enqueue(op, exec: slot, e)
        }
    }

    // MARK: Wire helpers

    /// Queues an envelope to `peer` with this node's id, the next sequence number and an HLC
    /// stamp; counts the drop when the outbound queue was full.
    func send(to peer: NodeID, kind: WireKind, correlation: UInt64, budget: Duration?, payload: [UInt8],
              flags: EnvelopeFlags = []) {
        sequence &+= 1
        var env = Envelope(protocolTag: .nodeEngine, kind: kind.rawValue, flags: flags, source: id,
                           destination: peer, correlation: correlation, sequence: sequence,
                           stamp: hlc.tick(), payload: payload)
        env.deadlineBudget = budget
        if let dropped = context.net.outbound.push(env) {
            context.bus.publish(.outboundDropped(destination: dropped.destination))
        }
    }
}
