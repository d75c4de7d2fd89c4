import Synchronization

/// What `perform` sees of its surroundings: a way to stream feedback and a cooperative
/// cancellation flag.
///
/// A running thread cannot be killed. When a task on a thread worker is cancelled, its
/// worker is abandoned (the result is discarded, a replacement thread takes its place) and
/// `isCancelled` turns true so a long `perform` can return early. In a worker process the
/// process is killed instead, so `isCancelled` stays false there.
public struct PerformContext<Feedback: Sendable>: Sendable {
    @usableFromInline let emitter: @Sendable (Feedback) -> Void
    @usableFromInline let cancelFlag: CancellationFlag

    /// Creates a context; backends make these.
    @inlinable
    public init(cancelFlag: CancellationFlag, emit: @escaping @Sendable (Feedback) -> Void) {
        self.cancelFlag = cancelFlag
        self.emitter = emit
    }

    /// Sends feedback to the master; it arrives before this task's response, in order.
    @inlinable public func emit(_ feedback: Feedback) { emitter(feedback) }

    /// True once the task was cancelled and its result will be discarded.
    @inlinable public var isCancelled: Bool { cancelFlag.isSet }
}

/// A flag set once, read from any thread.
public final class CancellationFlag: Sendable {
    @usableFromInline let flag = Atomic<Bool>(false)

    public init() {}

    @inlinable public var isSet: Bool { flag.load(ordering: .acquiring) }

    public func set() { flag.store(true, ordering: .releasing) }
}
