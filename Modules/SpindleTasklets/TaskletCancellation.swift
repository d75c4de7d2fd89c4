import Synchronization

/// A handle that cancels a launch from outside it (another thread, a task's cancellation).
///
/// Pass it to one launch at a time. `cancel()` before the launch starts cancels it as soon as
/// it starts; `cancel()` after it ended has no effect on it.
public final class TaskletCancellation: Sendable {
    private struct State {
        var cancelled = false
        var control: LaunchControl?
    }
    private let state = Mutex(State())

    public init() {}

    /// Cancels the attached launch (now, or when it starts).
    public func cancel() {
        state.withLock { state in
            state.cancelled = true
            // Under the lock, so the launch cannot finish and its pool reuse the control
            // block for another launch in between.
            state.control?.cancel()
        }
    }

    /// Whether `cancel()` was called.
    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    func attach(_ control: LaunchControl) {
        state.withLock { state in
            state.control = control
            if state.cancelled { control.cancel() }
        }
    }

    func detach() {
        state.withLock { $0.control = nil }
    }
}
