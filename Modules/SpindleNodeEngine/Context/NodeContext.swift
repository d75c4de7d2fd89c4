import SpindleKernel
import SpindleSupport

/// Everything an op receives when it is dispatched, grouped by concern:
///
/// ```
/// NodeContext
///  ├─ peers     gate · backoff · governor · addresses · backpressure
///  ├─ net       outbound · rtt · suspicion · monitor · requests · dedup
///  ├─ time      timers
///  ├─ syscalls  serialize · hold · records · counters · latches · limits · rng
///  ├─ bus       typed events
///  ├─ ingress   the thread-safe queue behind completion handles
///  ├─ siblings  other components by slot (not the dispatching one)
///  └─ current   op · execution · self id · inbound envelope context
/// ```
/// It belongs to one node and is only valid on the node's thread during a dispatch.
public final class NodeContext {
    var peers: PeerContext
    var net: NetContext
    var time: TimeContext
    var syscalls: SyscallState
    public var bus: TypedBus
    public let ingress: Ingress
    // `siblings` and `current` are written only by the engine (internal setters), on the node's
    // thread, each access a single statement that never spans a dispatch or a call back into a
    // component, so no two accesses can overlap: the dynamic exclusivity check the compiler
    // would emit on every op fired (several per op) can never trap and is skipped.
    @exclusivity(unchecked) public internal(set) var siblings = SiblingView()
    @exclusivity(unchecked) public internal(set) var current: CurrentCall
    /// The time of the poll in progress.
    public internal(set) var now: MonotonicInstant = .zero
    var program: InstalledProgram?

    init(selfID: NodeID, configuration: NodeConfiguration) {
        let c = configuration
        peers = PeerContext(
            gate: PeerGate(limit: c.perPeerConcurrency),
            backoff: BackoffTable(c.backoff, seed: c.seed &+ 0x5eed),
            governor: PeerGovernor(failuresUntilDown: c.failuresUntilDown),
            addresses: AddressBook(),
            backpressure: BackpressureTracker(noticesPerEpisode: c.backpressureNotices))
        net = NetContext(
            outbound: OutboundQueue(capacity: c.outboundCapacity),
            rtt: RttTracker(minimumBudget: c.minimumWireBudget),
            suspicion: PhiAccrualDetector(c.suspicion),
            monitor: PeerMonitor(),
            requests: RequestTracker(capacity: c.maxRequestsInFlight),
            dedup: InboundDedup(capacity: c.dedupCapacity, maxAge: c.dedupMaxAge))
        time = TimeContext(timers: TimerHeap(capacity: c.timerCapacity))
        syscalls = SyscallState(
            serialize: SerializeQueues(capacityPerName: c.namedQueueCapacity),
            hold: HoldTable(capacityPerName: c.namedQueueCapacity),
            records: RecordRings(capacityPerName: c.recordCapacity),
            rng: SplitMix64(seed: c.seed))
        bus = TypedBus()
        ingress = Ingress(capacities: [.network: c.ingressCapacity, .completions: c.completionIngressCapacity,
                                       .control: c.controlIngressCapacity],
                          resultCap: c.resultCap, detailCap: c.failureDetailCap)
        current = CurrentCall(selfID: selfID)
    }

    /// The installed op being dispatched.
    public var currentOp: InstalledOp? {
        guard let p = program, current.opIndex >= 0 else { return nil }
        return p.ops[current.opIndex].info
    }

    /// A new command id with a handle that completes it from any thread. Return
    /// `.async(handle.command)` from `dispatch`.
    public func openCompletion() -> CompletionHandle {
        CompletionHandle(command: current.allocateCommand(), ingress: ingress)
    }

    /// A new command id to complete in this cycle with `complete(_:_:)`.
    public func allocateCommand() -> CommandID { current.allocateCommand() }

    /// Completes `command` in this cycle (consumers fire in the same poll).
    public func complete(_ command: CommandID, _ outputs: OpOutputs) {
        current.completions.append((command, .success(outputs)))
    }

    /// Fails `command` in this cycle.
    public func fail(_ command: CommandID, _ detail: String) {
        current.completions.append((command, .failure(.failed(Ingress.truncate(detail, toBytes: ingress.detailCap)))))
    }

    /// Publishes an event on the bus.
    public func publish(_ event: NodeEvent) { bus.publish(event) }

    /// Schedules `timerFired(kind:)` on the dispatching component after `delay`.
    /// - Returns: false when no component is dispatching or the timer heap is full.
    @discardableResult
    public func scheduleTimer(after delay: Duration, kind: UInt32) -> Bool {
        guard siblings.dispatching >= 0 else { return false }
        return time.timers.schedule(at: now + delay, .component(slot: siblings.dispatching, kind: kind))
    }

    /// The component at `slot` as a `T` (see `SiblingView`).
    public func dependency<T>(_ slot: String, as type: T.Type) throws(DependencyError) -> T {
        try siblings.component(at: slot, as: type)
    }
}
