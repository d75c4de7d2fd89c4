import SpindleKernel
import Synchronization

/// Drives a `RankWait` with real time: state updates arrive from any thread, and a timer
/// task polls the wait at its (re-armed) idle deadline.
final class RankWaitDriver: Sendable {
    private struct State {
        var wait: RankWait
        var waiter: CheckedContinuation<RankWait.Outcome, Never>?
    }
    private let state: Mutex<State>
    private let clock: any SpindleClock

    init(_ wait: RankWait, clock: any SpindleClock) {
        state = Mutex(State(wait: wait))
        self.clock = clock
    }

    /// Records a rank's new state (re-arming the idle timeout).
    func record(rank: Int, state s: ProcState) {
        let now = clock.now()
        resumeIfDone { $0.record(rank: rank, state: s, now: now) }
    }

    /// Records a rank's new state in its start number `restarts`.
    func record(rank: Int, state s: ProcState, restarts: Int) {
        let now = clock.now()
        resumeIfDone { $0.record(rank: rank, state: s, restarts: restarts, now: now) }
    }

    /// Every rank's last state so far.
    var snapshot: [ProcState] { state.withLock { $0.wait.snapshot } }

    /// Waits for the outcome: the goal, a failed rank, or the idle timeout.
    func outcome() async -> RankWait.Outcome {
        let timer = Task { [clock] in
            while !Task.isCancelled {
                let deadline = state.withLock { $0.wait.outcome == nil ? $0.wait.deadline : nil }
                guard let deadline else { return }
                let wait = deadline - clock.now()
                if wait > .zero {
                    do { try await Task.sleep(for: wait) } catch { return }
                }
                let now = clock.now()
                resumeIfDone { $0.poll(now: now) }
            }
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { c in
            let done = state.withLock { s -> RankWait.Outcome? in
                if let o = s.wait.outcome { return o }
                s.waiter = c
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    private func resumeIfDone(_ step: (inout RankWait) -> RankWait.Outcome?) {
        let ready = state.withLock { s -> (CheckedContinuation<RankWait.Outcome, Never>, RankWait.Outcome)? in
            guard s.wait.outcome == nil else { return nil }
            guard let o = step(&s.wait), let c = s.waiter else { return nil }
            s.waiter = nil
            return (c, o)
        }
        if let (c, o) = ready { c.resume(returning: o) }
    }
}
