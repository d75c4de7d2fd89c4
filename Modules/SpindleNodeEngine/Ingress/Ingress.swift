import DequeModule
import SpindleKernel
import Synchronization

/// What reaches a node from outside its thread.
public enum IngressEvent: Sendable {
    /// An async op finished with these outputs.
    case completion(CommandID, OpOutputs)
    /// An async op failed.
    case failure(CommandID, String)
    /// An envelope arrived from the transport.
    case envelope(Envelope)
    /// Start an execution at a site with a value.
    case start(site: String, value: Value)
    /// Start an execution whose id was reserved with `Ingress.reserveExecution()`; with a
    /// timeout, the execution's ops must finish within it (and wire calls carry what is left).
    case startReserved(ExecID, site: String, value: Value, timeout: Duration?)
    /// Cancel a running execution: its pending ops fail with `cancelled`, nothing more fires.
    case cancel(ExecID)
    /// The host could not reach `peer` (a connect attempt failed); the node backs the peer off
    /// and counts the failure towards declaring it down.
    case peerUnreachable(NodeID, reason: String)
    /// Envelopes this node sent that will not be delivered (no route, link closed, delivery
    /// timeout): the calls they carried fail at once with the reason.
    case undeliverable([Envelope], reason: String)

    /// The lane the event travels in.
    public var lane: IngressLane {
        switch self {
        case .completion, .failure: return .completions
        case .envelope: return .network
        case .start, .startReserved, .cancel, .peerUnreachable, .undeliverable: return .control
        }
    }
}

/// The ingress queue's lanes, each bounded on its own: a flood of inbound envelopes fills
/// only `network`, so completions and the host's requests still get in.
public enum IngressLane: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Completions and failures of async ops.
    case completions
    /// The host's starts and cancels, and its transport reports.
    case control
    /// Envelopes from peers.
    case network

    public var description: String { rawValue }
}

/// Why the ingress queue refused an event.
public enum IngressError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The lane holds `capacity` events already; the event was not queued.
    case full(lane: IngressLane, capacity: Int)
    /// A completion's results exceed the per-result cap; the command was failed instead.
    case resultTooLarge(command: CommandID, size: Int, cap: Int)

    public var description: String {
        switch self {
        case .full(let lane, let c): return "ingress \(lane) lane full (\(c) events)"
        case .resultTooLarge(let c, let s, let cap): return "result of \(c) is \(s) bytes, over the cap of \(cap)"
        }
    }
}

/// The node's bounded multi-producer, single-consumer ingress queue, in three lanes
/// (completions, control, network), each with its own capacity.
///
/// Any thread pushes; the node's thread drains everything at once at the start of a poll by
/// swapping each lane's storage under the lock, so producers contend only for an append.
/// A waker (set by a driver) runs when the queue goes from drained to non-empty, so a burst
/// of pushes costs one wake-up.
public final class Ingress: Sendable {
    struct State {
        var completions: Deque<IngressEvent> = []
        var control: Deque<IngressEvent> = []
        var network: Deque<IngressEvent> = []
        var wakePending = false
        var waker: (@Sendable () -> Void)?

        var isEmpty: Bool { completions.isEmpty && control.isEmpty && network.isEmpty }
    }

    /// Capacity of each lane.
    public let capacities: [IngressLane: Int]
    /// Byte cap for one completion's results.
    public let resultCap: Int
    /// Byte cap for a failure's detail text (longer text is truncated at a UTF-8 boundary).
    public let detailCap: Int
    private let completionCapacity: Int
    private let controlCapacity: Int
    private let networkCapacity: Int
    private let state: Mutex<State>
    private let fullCompletions = Atomic<UInt64>(0)
    private let fullControl = Atomic<UInt64>(0)
    private let fullNetwork = Atomic<UInt64>(0)
    private let oversizeRejections = Atomic<UInt64>(0)
    /// Execution ids, handed out here so a host can learn an id before the node starts it.
    private let nextExecution = Atomic<UInt64>(1)

    /// One capacity for every lane.
    public convenience init(capacity: Int, resultCap: Int, detailCap: Int) {
        self.init(capacities: [.completions: capacity, .control: capacity, .network: capacity],
                  resultCap: resultCap, detailCap: detailCap)
    }

    /// A capacity per lane (a lane left out gets 65 536).
    public init(capacities: [IngressLane: Int], resultCap: Int, detailCap: Int) {
        completionCapacity = max(1, capacities[.completions] ?? 65_536)
        controlCapacity = max(1, capacities[.control] ?? 65_536)
        networkCapacity = max(1, capacities[.network] ?? 65_536)
        self.capacities = [.completions: completionCapacity, .control: controlCapacity, .network: networkCapacity]
        self.resultCap = resultCap
        self.detailCap = max(4, detailCap)
        state = Mutex(State())
    }

    /// Queues `event` for the next poll, in its lane.
    /// - Throws: `IngressError.full` when the lane is at capacity (also counted on the bus).
    public func push(_ event: IngressEvent) throws(IngressError) {
        let lane = event.lane
        let (accepted, wake) = state.withLock { s -> (Bool, (@Sendable () -> Void)?) in
            switch lane {
            case .completions:
                guard s.completions.count < completionCapacity else { return (false, nil) }
                s.completions.append(event)
            case .control:
                guard s.control.count < controlCapacity else { return (false, nil) }
                s.control.append(event)
            case .network:
                guard s.network.count < networkCapacity else { return (false, nil) }
                s.network.append(event)
            }
            if s.wakePending { return (true, nil) }
            s.wakePending = true
            return (true, s.waker)
        }
        guard accepted else {
            switch lane {
            case .completions: fullCompletions.add(1, ordering: .relaxed)
            case .control: fullControl.add(1, ordering: .relaxed)
            case .network: fullNetwork.add(1, ordering: .relaxed)
            }
            throw .full(lane: lane, capacity: capacities[lane] ?? 0)
        }
        wake?()
    }

    /// Reserves the id the next execution started with `.startReserved` will have.
    public func reserveExecution() -> ExecID {
        ExecID(nextExecution.wrappingAdd(1, ordering: .relaxed).oldValue)
    }

    /// Completes `command` with `outputs`, checking the result cap.
    public func complete(_ command: CommandID, _ outputs: OpOutputs) throws(IngressError) {
        let size = outputs.byteCount
        guard size <= resultCap else {
            oversizeRejections.add(1, ordering: .relaxed)
            // The op still learns it failed, rather than waiting for its deadline.
            try? push(.failure(command, "result of \(size) bytes exceeds the cap of \(resultCap)"))
            throw .resultTooLarge(command: command, size: size, cap: resultCap)
        }
        try push(.completion(command, outputs))
    }

    /// Fails `command` with `detail`, truncated to `detailCap` bytes at a UTF-8 boundary.
    public func fail(_ command: CommandID, _ detail: String) throws(IngressError) {
        try push(.failure(command, Ingress.truncate(detail, toBytes: detailCap)))
    }

    /// Sets the function run when the queue becomes non-empty (replaces any earlier one).
    public func setWaker(_ waker: (@Sendable () -> Void)?) {
        state.withLock { $0.waker = waker }
    }

    /// Whether events are waiting.
    public var isEmpty: Bool { state.withLock { $0.isEmpty } }

    /// Events waiting in `lane`.
    public func count(_ lane: IngressLane) -> Int {
        state.withLock { s in
            switch lane {
            case .completions: return s.completions.count
            case .control: return s.control.count
            case .network: return s.network.count
            }
        }
    }

    /// Moves every queued event into the three buffers (which must be empty) in one lock; the
    /// next push wakes the consumer again.
    func drain(completions: inout Deque<IngressEvent>, control: inout Deque<IngressEvent>,
               network: inout Deque<IngressEvent>) {
        state.withLock { s in
            swap(&s.completions, &completions)
            swap(&s.control, &control)
            swap(&s.network, &network)
            s.wakePending = false
        }
    }

    /// Every queued event, lane by lane (completions, control, network) (node thread only).
    func drainAll() -> [IngressEvent] {
        var a = Deque<IngressEvent>(), b = Deque<IngressEvent>(), c = Deque<IngressEvent>()
        drain(completions: &a, control: &b, network: &c)
        return Array(a) + Array(b) + Array(c)
    }

    /// Rejections counted since the last call: full, by lane, and oversize.
    func takeRejections() -> (full: [IngressLane: UInt64], oversize: UInt64) {
        var full: [IngressLane: UInt64] = [:]
        let counts = [(IngressLane.completions, fullCompletions.exchange(0, ordering: .relaxed)),
                      (.control, fullControl.exchange(0, ordering: .relaxed)),
                      (.network, fullNetwork.exchange(0, ordering: .relaxed))]
        for (lane, n) in counts where n > 0 { full[lane] = n }
        return (full, oversizeRejections.exchange(0, ordering: .relaxed))
    }

    /// `text` cut to at most `limit` UTF-8 bytes without splitting a character's encoding.
    public static func truncate(_ text: String, toBytes limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var end = text.unicodeScalars.startIndex
        var bytes = 0
        for i in text.unicodeScalars.indices {
            let n = UTF8.width(text.unicodeScalars[i])
            if bytes + n > limit { break }
            bytes += n
            end = text.unicodeScalars.index(after: i)
        }
        return String(text.unicodeScalars[..<end])
    }
}

/// Lets code on any thread finish one async op: complete it with outputs or fail it.
public struct CompletionHandle: Sendable {
    public let command: CommandID
    let ingress: Ingress

    init(command: CommandID, ingress: Ingress) {
        self.command = command
        self.ingress = ingress
    }

    /// Completes the op with `outputs`.
    /// - Throws: `IngressError.resultTooLarge` (the op is failed instead) or `.full`.
    public func complete(_ outputs: OpOutputs) throws(IngressError) {
        try ingress.complete(command, outputs)
    }

    /// Completes the op with one output on port 0.
    public func complete(_ value: Value) throws(IngressError) {
        try ingress.complete(command, OpOutputs(value))
    }

    /// Fails the op; it surfaces as `opFailed` with `detail` (truncated at a UTF-8 boundary).
    public func fail(_ detail: String) throws(IngressError) {
        try ingress.fail(command, detail)
    }
}
