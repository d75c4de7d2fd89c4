import DequeModule
import SpindleKernel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// φ-accrual failure detection (Hayashibara et al.) per peer: φ grows with the time since the
/// peer was last heard of, relative to how regularly it is usually heard of. A peer becomes
/// suspected when φ crosses the threshold and trusted again when it is heard of; each change
/// is reported once.
struct PhiAccrualDetector: Sendable {
    typealias Configuration = NodeConfiguration.Suspicion

    enum Change: Sendable, Equatable {
        case suspected(NodeID)
        case trusted(NodeID)
    }

    struct History {
        var intervals: Deque<Double> = []
        var sum: Double = 0
        var sumSquares: Double = 0
        var last: MonotonicInstant
        var suspected = false
    }

    let configuration: Configuration
    private var peers: [NodeID: History] = [:]

    init(_ configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// `peer` was heard of at `now`; returns `.trusted` when it was suspected.
    mutating func heartbeat(_ peer: NodeID, at now: MonotonicInstant) -> Change? {
        guard var h = peers[peer] else {
            peers[peer] = History(last: now)
            return nil
        }
        let interval = Double(max(0, (now - h.last).nanosecondsClamped))
        h.intervals.append(interval)
        h.sum += interval
        h.sumSquares += interval * interval
        if h.intervals.count > configuration.window {
            let old = h.intervals.removeFirst()
            h.sum -= old
            h.sumSquares -= old * old
        }
        h.last = now
        let wasSuspected = h.suspected
        h.suspected = false
        peers[peer] = h
        return wasSuspected ? .trusted(peer) : nil
    }

    /// φ for `peer` at `now` (0 while there are too few samples).
    func phi(_ peer: NodeID, at now: MonotonicInstant) -> Double {
        guard let h = peers[peer], h.intervals.count >= configuration.minimumSamples else { return 0 }
        let n = Double(h.intervals.count)
        let mean = h.sum / n + Double(configuration.acceptablePause.nanosecondsClamped)
        let rawMean = h.sum / n
        let variance = max(0, h.sumSquares / n - rawMean * rawMean)
        let sd = max(variance.squareRoot(), Double(configuration.minimumDeviation.nanosecondsClamped))
        let elapsed = Double(max(0, (now - h.last).nanosecondsClamped))
        // Logistic approximation of the normal CDF (as used by Akka and Cassandra).
        let y = (elapsed - mean) / sd
        let e = exp(-y * (1.5976 + 0.070566 * y * y))
        let pLater = elapsed > mean ? e / (1 + e) : 1 - 1 / (1 + e)
        return -log10(max(pLater, Double.leastNormalMagnitude))
    }

    /// Re-evaluates `peer` at `now` (the node checks each watched peer once per heartbeat
    /// interval, from a heap, rather than sweeping every peer on every poll): returns
    /// `.suspected` when φ has crossed the threshold since the last check.
    mutating func check(_ peer: NodeID, at now: MonotonicInstant) -> Change? {
        guard let h = peers[peer], !h.suspected, phi(peer, at: now) >= configuration.threshold else { return nil }
        peers[peer]!.suspected = true
        return .suspected(peer)
    }

    /// Marks `peer` suspected without consulting φ (its liveness bound passed).
    mutating func suspect(_ peer: NodeID) {
        peers[peer]?.suspected = true
    }

    /// Forgets `peer`'s history.
    mutating func forget(_ peer: NodeID) {
        peers[peer] = nil
    }

    /// Peers with history.
    var count: Int { peers.count }

    func isSuspected(_ peer: NodeID) -> Bool { peers[peer]?.suspected ?? false }
}
