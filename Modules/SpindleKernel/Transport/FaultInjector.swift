import SpindleSupport
import Synchronization

/// Standing fault rates for the in-process transport, applied to every envelope sent.
///
/// All randomness comes from the transport's seeded generator, so a run with the same seed
/// and the same sends makes the same decisions.
public struct FaultPlan: Sendable, Equatable {
    /// Chance (0...1) that an envelope is silently dropped.
    public var dropProbability: Double
    /// Chance (0...1) that an envelope is delivered twice.
    public var duplicateProbability: Double
    /// Chance (0...1) that an envelope is held back by a random duration from `delayRange`.
    /// Delays keep each connection FIFO (later envelopes queue behind a delayed one), so they
    /// reorder envelopes *across* connections, never within one.
    public var delayProbability: Double
    public var delayRange: ClosedRange<Duration>

    public init(dropProbability: Double = 0, duplicateProbability: Double = 0,
                delayProbability: Double = 0, delayRange: ClosedRange<Duration> = .zero ... .zero) {
        self.dropProbability = dropProbability
        self.duplicateProbability = duplicateProbability
        self.delayProbability = delayProbability
        self.delayRange = delayRange
    }

    /// No faults.
    public static let none = FaultPlan()

    var isNone: Bool { dropProbability <= 0 && duplicateProbability <= 0 && delayProbability <= 0 }
}

/// Counts of the faults the in-process transport has injected.
public struct FaultStats: Sendable, Equatable {
    public var dropped = 0
    public var duplicated = 0
    public var delayed = 0
    /// Envelopes dropped because their endpoints were partitioned.
    public var partitioned = 0
    /// Connections closed by `disconnect`.
    public var disconnected = 0
    public init() {}
}

/// What the fault layer decided for one envelope.
enum FaultDecision {
    case deliver(copies: Int, delay: Duration?)
    case drop
}

/// The mutable fault state of one in-process transport (kept under the transport's lock).
struct FaultState {
    var plan = FaultPlan.none
    var dropNext = 0
    var duplicateNext = 0
    var delayNext: [Duration] = []
    /// Unordered pairs of endpoint names that cannot talk.
    var partitions: Set<EndpointPair> = []
    /// Endpoint names cut off from everybody.
    var isolated: Set<String> = []
    var stats = FaultStats()
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    var isActive: Bool {
        !plan.isNone || dropNext > 0 || duplicateNext > 0 || !delayNext.isEmpty
            || !partitions.isEmpty || !isolated.isEmpty
    }

    func separates(_ a: String, _ b: String) -> Bool {
        isolated.contains(a) || isolated.contains(b) || partitions.contains(EndpointPair(a, b))
    }

    mutating func decide(from a: String, to b: String) -> FaultDecision {
        if separates(a, b) {
            stats.partitioned += 1
            return .drop
        }
        if dropNext > 0 {
            dropNext -= 1
            stats.dropped += 1
            return .drop
        }
        if plan.dropProbability > 0 && chance(plan.dropProbability) {
            stats.dropped += 1
            return .drop
        }
        var copies = 1
        if duplicateNext > 0 {
            duplicateNext -= 1
            copies = 2
        } else if plan.duplicateProbability > 0 && chance(plan.duplicateProbability) {
            copies = 2
        }
        if copies == 2 { stats.duplicated += 1 }
        var delay: Duration? = nil
        if !delayNext.isEmpty {
            delay = delayNext.removeFirst()
        } else if plan.delayProbability > 0 && chance(plan.delayProbability) {
            let lo = plan.delayRange.lowerBound.nanosecondsClamped
            let hi = plan.delayRange.upperBound.nanosecondsClamped
            delay = .nanoseconds(hi > lo ? Int64.random(in: lo...hi, using: &rng) : lo)
        }
        if delay != nil { stats.delayed += 1 }
        return .deliver(copies: copies, delay: delay)
    }

    private mutating func chance(_ p: Double) -> Bool {
        Double(rng.next() >> 11) * 0x1.0p-53 < p
    }
}

/// An unordered pair of endpoint names.
struct EndpointPair: Hashable {
    let first: String
    let second: String
    init(_ a: String, _ b: String) {
        if a <= b { first = a; second = b } else { first = b; second = a }
    }
}
