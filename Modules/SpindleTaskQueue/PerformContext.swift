import Synchronization

/// What `perform` sees of its surroundings: a way to stream feedback and a cooperative
/// cancellation flag.
///
/// A running thread cannot be killed. When a task on a thread worker is cancelled or runs past
/// its time limit, `isCancelled` turns true so a long `perform` can return early; a cancelled
/// task's worker is abandoned (its result is discarded, a replacement thread takes its place),
/// a timed-out one is killed (abandoned) only if it does not answer within the queue's
/// `timeLimitGrace`. In a worker process the process is killed instead, so `isCancelled`
/// stays false there.
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

    /// True once the task was cancelled or timed out and its result will be discarded.
    @inlinable public var isCancelled: Bool { cancelFlag.isSet }
}

/// A worker's cancellation flag, read from any thread: set for good when the worker is
/// abandoned, or for one task (by its sequence number) when that task is interrupted.
public final class CancellationFlag: Sendable {
    @usableFromInline let flag = Atomic<Bool>(false)
    /// The task the worker is running now (its queue sequence number).
    @usableFromInline let current = Atomic<UInt64>(0)
    /// The task whose flag was raised (`UInt64.max`: none).
    @usableFromInline let interrupted = Atomic<UInt64>(.max)

    public init() {}

    /// Whether the worker was abandoned or its current task interrupted.
    @inlinable public var isSet: Bool {
        flag.load(ordering: .acquiring) || interrupted.load(ordering: .acquiring) == current.load(ordering: .acquiring)
    }

    /// Abandons the worker: every later check is true.
    public func set() { flag.store(true, ordering: .releasing) }

    /// Whether the worker was abandoned (not merely one task interrupted).
    @inlinable public var isAbandoned: Bool { flag.load(ordering: .acquiring) }

    /// Marks task `seq` as the one running now.
    @inlinable public func begin(seq: UInt64) { current.store(seq, ordering: .releasing) }

    /// Raises the flag of task `seq` (seen only while it is the current one).
    public func interrupt(seq: UInt64) { interrupted.store(seq, ordering: .releasing) }
}
