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
}

/// Why the ingress queue refused an event.
public enum IngressError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The queue holds `capacity` events already; the event was not queued.
    case full(capacity: Int)
    /// A completion's results exceed the per-result cap; the command was failed instead.
    case resultTooLarge(command: CommandID, size: Int, cap: Int)

    public var description: String {
        switch self {
        case .full(let c): return "ingress queue full (\(c) events)"
        case .resultTooLarge(let c, let s, let cap): return "result of \(c) is \(s) bytes, over the cap of \(cap)"
        }
    }
}

/// The node's bounded multi-producer, single-consumer ingress queue.
///
/// Any thread pushes; the node's thread drains everything at once at the start of a poll by
/// swapping the queue's storage under the lock, so producers contend only for an append.
/// A waker (set by a driver) runs when the queue goes from empty to non-empty, so a burst of
/// pushes costs one wake-up.
public final class Ingress: Sendable {
    struct State {
        var queue: Deque<IngressEvent> = []
        var waker: (@Sendable () -> Void)?
    }

    public let capacity: Int
    /// Byte cap for one completion's results.
    public let resultCap: Int
    /// Byte cap for a failure's detail text (longer text is truncated at a UTF-8 boundary).
    public let detailCap: Int
    private let state: Mutex<State>
    private let fullRejections = Atomic<UInt64>(0)
    private let oversizeRejections = Atomic<UInt64>(0)

    public init(capacity: Int, resultCap: Int, detailCap: Int) {
        self.capacity = max(1, capacity)
        self.resultCap = resultCap
        self.detailCap = max(4, detailCap)
        state = Mutex(State())
    }

    /// Queues `event` for the next poll.
    /// - Throws: `IngressError.full` when the queue is at capacity (also counted on the bus).
    public func push(_ event: IngressEvent) throws(IngressError) {
        let (accepted, wake) = state.withLock { s -> (Bool, (@Sendable () -> Void)?) in
            guard s.queue.count < capacity else { return (false, nil) }
            let wasEmpty = s.queue.isEmpty
            s.queue.append(event)
            return (true, wasEmpty ? s.waker : nil)
        }
        guard accepted else {
            fullRejections.add(1, ordering: .relaxed)
            throw .full(capacity: capacity)
        }
        wake?()
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
    public var isEmpty: Bool { state.withLock { $0.queue.isEmpty } }

    /// Moves every queued event into `buffer` (which must be empty) in one lock.
    func drain(into buffer: inout Deque<IngressEvent>) {
        state.withLock { swap(&$0.queue, &buffer) }
    }

    /// Every queued event, in order (node thread only).
    func drainAll() -> [IngressEvent] {
        var buffer = Deque<IngressEvent>()
        drain(into: &buffer)
        return Array(buffer)
    }

    /// Rejections counted since the last call: (full, oversize).
    func takeRejections() -> (full: UInt64, oversize: UInt64) {
        (fullRejections.exchange(0, ordering: .relaxed), oversizeRejections.exchange(0, ordering: .relaxed))
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
