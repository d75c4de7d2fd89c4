import DequeModule
import SpindleKernel

/// The node's state machine: executions, the frontier of ready ops, pending async ops and
/// deadlines. A value type held by `Node`, so the hot loop mutates plain stored properties
/// (no per-access exclusivity bookkeeping of class properties).
struct Engine {
    let id: NodeID
    let configuration: NodeConfiguration
    let context: NodeContext
    let hlc: HybridLogicalClock
    var program: InstalledProgram?

    // Executions: a slab indexed densely, reused in place.
    var execs: [ExecState] = []
    var freeExecSlots: [Int] = []
    var execSlotByID: [ExecID: Int] = [:]
    var liveInboundExecs = 0

    /// Ready (op, execution slot) pairs in firing order.
    var frontier = Deque<(op: Int, exec: Int)>()
    var pending: [CommandID: PendingOp] = [:]
    var deadlines = TimerHeap<CommandID>(capacity: .max)
    var completionBuffer = Deque<IngressEvent>()
    var controlBuffer = Deque<IngressEvent>()
    var networkBuffer = Deque<IngressEvent>()
    var inbox = Deque<Envelope>()
    /// Bus events whose subscribed executions have not started yet (at most
    /// `opBudgetPerPoll` start per poll; the rest wait for the next one).
    var subscriptionBacklog = Deque<(at: MonotonicInstant, event: NodeEvent)>()
    var refusedStarts: [RefusedStart] = []

    // What the current poll produces.
    var appEvents: [AppEvent] = []
    var finishedNow: [FinishedExecution] = []
    var readable: [ExecID: FinishedExecution] = [:]
    /// Slots finished since the last outcome, and those reported in it (freed next poll).
    var justFinished: [Int] = []
    var collectNext: [Int] = []
    var sequence: UInt64 = 0
    var heartbeatNumber: UInt64 = 0
    var now: MonotonicInstant = .zero
    var nextPendingKind: PendingOp.Kind = .component

    init(id: NodeID, configuration: NodeConfiguration, clock: any SpindleClock) {
        self.id = id
        self.configuration = configuration
        context = NodeContext(selfID: id, configuration: configuration)
        hlc = HybridLogicalClock(clock: clock)
    }

    // MARK: Executions

    mutating func beginExecution(inbound: InboundContext, fromWire: Bool, id reserved: ExecID? = nil) -> Int {
        let p = program!
        let slot: Int
        if let s = freeExecSlots.popLast() {
            slot = s
        } else {
            slot = execs.count
            execs.append(ExecState(program: p))
        }
        let id = reserved ?? context.ingress.reserveExecution()
        execs[slot].id = id
        execs[slot].inUse = true
        execs[slot].live = true
        execs[slot].startedAt = now
        execs[slot].inbound = inbound
        execs[slot].fromWire = fromWire
        if let budget = inbound.remainingBudget { execs[slot].deadline = (inbound.arrival ?? now) + budget }
        execSlotByID[id] = slot
        if fromWire { liveInboundExecs += 1 }
        for op in p.sourceOps { enqueue(op, exec: slot) }
        return slot
    }

    @inline(__always)
    mutating func enqueue(_ op: Int, exec slot: Int) {
        execs[slot].queued[op] = true
        execs[slot].outstanding += 1
        frontier.append((op, slot))
    }

    /// Finishes the execution when nothing of it is ready or pending.
    mutating func settle(_ slot: Int) {
        guard execs[slot].live, execs[slot].outstanding == 0 else { return }
        execs[slot].live = false
        if execs[slot].awaitingReply {
            // A site-targeted request whose execution ended without `Reply`: the caller learns
            // the first failure, when there was one.
            if let first = execs[slot].errors.first {
                replyError(slot, "op `\(first.op)` \(first.reason)")
            } else {
                replyError(slot, execs[slot].cancelled ? "execution cancelled" : "execution finished without replying")
            }
        }
        if execs[slot].fromWire {
            liveInboundExecs -= 1
            if liveInboundExecs < configuration.maxInboundExecutions && context.peers.backpressure.isOverloaded {
                context.peers.backpressure.relieved()
            }
        }
        let p = program!
        var results: [String: [Value]] = [:]
        for (site, value) in execs[slot].results { results[p.sites[site].name, default: []].append(value) }
        let e = execs[slot]
        let done = FinishedExecution(id: e.id, results: results, startedAt: e.startedAt, finishedAt: now,
                                     failures: e.failures, errors: e.errors, cancelled: e.cancelled)
        finishedNow.append(done)
        readable[e.id] = done
        justFinished.append(slot)
        context.bus.publish(.executionFinished(e.id))
    }

    /// Frees executions whose results the host has had one poll to read.
    mutating func collect() {
        for slot in collectNext {
            let id = execs[slot].id
            readable[id] = nil
            execSlotByID[id] = nil
            for op in execs[slot].latchedOps {
                context.syscalls.deadlineMatchFired.remove(SyscallState.DeadlineLatch(op: op, execution: id))
            }
            for group in execs[slot].latchedGroups {
                context.syscalls.anyFiredInExecution.remove(SyscallState.AnyLatch(group: group, execution: id))
            }
            execs[slot].reset()
            freeExecSlots.append(slot)
        }
        collectNext.removeAll(keepingCapacity: true)
    }

    // MARK: Sites and slots

    /// Writes `value` to site `s` in execution `slot`: fills every consumer's input slot, or
    /// records it as a result when the site is a sink.
    @inline(__always)
    mutating func writeSite(_ s: Int, _ value: Value, exec slot: Int, _ p: InstalledProgram) {
        let count = p.siteConsumerCount[s]
        if count == 0 {
            execs[slot].results.append((s, value))
            return
        }
        let base = p.siteConsumerBase[s]
        for k in base..<(base + count) { fill(p.consumerFlat[k], value, slot, p) }
    }

    @inline(__always)
    mutating func fill(_ input: Int, _ value: Value, _ slot: Int, _ p: InstalledProgram) {
        let op = p.slotOp[input]
        if execs[slot].slots[input] == nil {
            let role = p.slotRole[input]
            if role == -1 {
                execs[slot].required[op] &+= 1
            } else if role >= 0 {
                if execs[slot].groupHits[role] == 0 { execs[slot].groupsSatisfied[op] &+= 1 }
                execs[slot].groupHits[role] &+= 1
            }
        } else {
            context.bus.publish(.slotOverwritten(op: p.ops[op].info.name, port: p.slotPortName[input]))
        }
        execs[slot].slots[input] = value
        if !execs[slot].queued[op] && execs[slot].required[op] == p.opRequired[op]
            && execs[slot].groupsSatisfied[op] == p.opGroupCount[op] {
            enqueue(op, exec: slot)
        }
    }

    // MARK: Wire helpers

    /// Queues an envelope to `peer` with this node's id, the next sequence number and an HLC
    /// stamp; counts the drop when the outbound queue was full.
    mutating func send(to peer: NodeID, kind: WireKind, correlation: UInt64, budget: Duration?, payload: [UInt8],
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
