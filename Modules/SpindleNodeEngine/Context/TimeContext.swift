import SpindleKernel

/// What a matured timer does.
enum TimerPayload: Sendable, Equatable {
    /// Completes a pending command (Sleep, After) with the outputs it parked.
    case complete(CommandID)
    /// Calls `timerFired(kind:)` on the component at slot index `slot`.
    case component(slot: Int, kind: UInt32)
}

/// Time state: the node's bounded timer heap.
struct TimeContext: Sendable {
    var timers: TimerHeap<TimerPayload>
}
