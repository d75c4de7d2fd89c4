import SpindleKernel
import SpindleSupport

/// Per-peer exponential backoff: after the n-th consecutive failure a peer is left alone for
/// `base · 2^(n-1)`, capped at `cap`, shortened by up to `jitter` (a fraction) at random.
struct BackoffTable: Sendable {
    typealias Configuration = NodeConfiguration.Backoff

    struct Entry {
        var failures: Int
        var until: MonotonicInstant
    }

    let configuration: Configuration
    private var entries: [NodeID: Entry] = [:]
    private var rng: SplitMix64

    init(_ configuration: Configuration = .init(), seed: UInt64) {
        self.configuration = configuration
        rng = SplitMix64(seed: seed)
    }

    /// The delay before jitter after `failures` consecutive failures (0 for none).
    func nominalDelay(afterFailures failures: Int) -> Duration {
        guard failures > 0 else { return .zero }
        let base = configuration.base.nanosecondsClamped
        let cap = configuration.cap.nanosecondsClamped
        let shift = min(failures - 1, 62)
        let (scaled, overflow) = base.multipliedReportingOverflow(by: Int64(1) << shift)
        return .nanoseconds(overflow ? cap : min(scaled, cap))
    }

    /// Records a failure talking to `peer` at `now`; returns how long the peer is backed off.
    @discardableResult
    mutating func recordFailure(_ peer: NodeID, now: MonotonicInstant) -> Duration {
        let failures = (entries[peer]?.failures ?? 0) + 1
        let nominal = nominalDelay(afterFailures: failures).nanosecondsClamped
        let cut = Double(nominal) * min(max(configuration.jitter, 0), 1) * rng.nextUnit()
        let delay = Duration.nanoseconds(nominal - Int64(cut))
        entries[peer] = Entry(failures: failures, until: now + delay)
        return delay
    }

    /// Clears `peer`'s failures after a success.
    mutating func recordSuccess(_ peer: NodeID) {
        entries[peer] = nil
    }

    /// Whether `peer` is still backed off at `now`.
    func isBackedOff(_ peer: NodeID, now: MonotonicInstant) -> Bool {
        guard let e = entries[peer] else { return false }
        return now < e.until
    }

    /// When `peer` may be tried again (nil when it is not backed off).
    func retryAt(_ peer: NodeID) -> MonotonicInstant? { entries[peer]?.until }

    /// Consecutive failures recorded for `peer`.
    func failures(of peer: NodeID) -> Int { entries[peer]?.failures ?? 0 }

    /// Forgets `peer`'s failures (an idle peer's state).
    mutating func forget(_ peer: NodeID) {
        entries[peer] = nil
    }

    /// Peers with recorded failures.
    var peerCount: Int { entries.count }
}
