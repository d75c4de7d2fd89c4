import SpindleKernel

/// The state of one run of the program: the input slots of every op and their fill counters.
/// Lives in the engine's slab of executions and is reused in place when freed.
struct ExecState {
    var id = ExecID(0)
    var slots: [Value?]
    var required: [Int16]
    var groupsSatisfied: [Int16]
    var groupHits: [Int16]
    var queued: [Bool]
    /// Ready entries plus pending async ops of this execution; it finishes when this is 0.
    var outstanding = 0
    var results: [(site: Int, value: Value)] = []
    var inbound = InboundContext()
    var deadline: MonotonicInstant?
    var startedAt: MonotonicInstant = .zero
    /// The op whose outputs answer the inbound request (-1 none).
    var replyOp = -1
    /// An inbound request still waiting for `Reply` or the reply op.
    var awaitingReply = false
    var fromWire = false
    var failures = 0
    /// The failures of this execution's ops, in order.
    var errors: [OpFailure] = []
    var cancelled = false
    /// Ops whose `DeadlineMatch` latch and `Any` groups whose execution-scoped latch fired
    /// in this execution (cleared with it).
    var latchedOps: [Int] = []
    var latchedGroups: [String] = []
    /// Running (false once finished).
    var live = false
    /// Holds an execution (running or finished but not yet collected).
    var inUse = false

    init(program: InstalledProgram) {
        slots = Array(repeating: nil, count: program.totalSlots)
        required = Array(repeating: 0, count: program.ops.count)
        groupsSatisfied = Array(repeating: 0, count: program.ops.count)
        groupHits = Array(repeating: 0, count: program.totalGroups)
        queued = Array(repeating: false, count: program.ops.count)
    }

    /// Clears everything for reuse (slots are normally already empty: every fired op took its
    /// inputs).
    mutating func reset() {
        for i in slots.indices where slots[i] != nil { slots[i] = nil }
        for i in required.indices { required[i] = 0; groupsSatisfied[i] = 0; queued[i] = false }
        for i in groupHits.indices { groupHits[i] = 0 }
        outstanding = 0
        results.removeAll(keepingCapacity: true)
        inbound = InboundContext()
        deadline = nil
        replyOp = -1
        awaitingReply = false
        fromWire = false
        failures = 0
        if !errors.isEmpty { errors.removeAll() }
        cancelled = false
        if !latchedOps.isEmpty { latchedOps.removeAll() }
        if !latchedGroups.isEmpty { latchedGroups.removeAll() }
        live = false
        inUse = false
    }
}

/// An async op waiting for its completion.
struct PendingOp {
    enum Kind {
        case component
        /// Sleep / After: completes with these outputs when its timer matures at `due`.
        case timer(OpOutputs, due: MonotonicInstant)
        /// WireCall: the request id in the request tracker and the peer.
        case wire(request: UInt64, peer: NodeID)
        /// LimitAcquire waiting for a unit of `name`; completes with `value`.
        case limit(name: String, value: Value)
    }

    var op: Int
    var exec: Int
    var execID: ExecID
    var kind: Kind
    var deadline: MonotonicInstant
}
