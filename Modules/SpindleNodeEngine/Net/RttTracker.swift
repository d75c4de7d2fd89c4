import SpindleKernel

/// Identifies a remote endpoint for round-trip statistics: a peer and what was called there.
struct RttTarget: Hashable, Sendable {
    var peer: NodeID
    var endpoint: String

    init(peer: NodeID, endpoint: String) {
        self.peer = peer
        self.endpoint = endpoint
    }
}

/// Where a request sits in a chain of wire hops (the same chain of targets shares statistics).
struct ChainHop: Hashable, Sendable {
    var chain: UInt64
    var hop: UInt8

    init(chain: UInt64, hop: UInt8) {
        self.chain = chain
        self.hop = hop
    }

    /// A stable chain id from the chain's target list (FNV-1a of its text).
    static func chainID(targets: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in targets.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        return h
    }
}

/// Jacobson/Karels smoothed round-trip estimate (RFC 6298): the first sample R sets
/// `srtt = R`, `rttvar = R/2`; later samples `rttvar ← ¾·rttvar + ¼·|srtt − R|`,
/// `srtt ← ⅞·srtt + ⅛·R`. The budget is `srtt + 4·rttvar`.
struct RttEstimate: Sendable, Equatable {
    private(set) var srtt: Double = 0
    private(set) var rttvar: Double = 0
    private(set) var samples: Int = 0

    init() {}

    mutating func observe(nanoseconds r: Double) {
        if samples == 0 {
            srtt = r
            rttvar = r / 2
        } else {
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
        }
        samples += 1
    }

    /// `srtt + 4·rttvar` in nanoseconds.
    var budgetNanoseconds: Double { srtt + 4 * rttvar }
}

/// Adaptive round-trip tracker with hierarchical fallback: per chain hop, then per target,
/// then global, then a static default, whichever first has a sample.
struct RttTracker: Sendable {
    enum Tier: String, Sendable, Equatable {
        case chainHop, target, global, staticDefault
    }

    private var hops: [ChainHop: RttEstimate] = [:]
    private var targets: [RttTarget: RttEstimate] = [:]
    private(set) var global = RttEstimate()
    /// Lower bound for every budget, so a run of fast samples cannot make deadlines absurd.
    var minimumBudget: Duration

    init(minimumBudget: Duration = .microseconds(100)) {
        self.minimumBudget = minimumBudget
    }

    /// Feeds one measured round trip into every tier it belongs to.
    mutating func observe(_ target: RttTarget, chain: ChainHop?, roundTrip: Duration) {
        let r = Double(max(0, roundTrip.nanosecondsClamped))
        if let chain { hops[chain, default: RttEstimate()].observe(nanoseconds: r) }
        targets[target, default: RttEstimate()].observe(nanoseconds: r)
        global.observe(nanoseconds: r)
    }

    /// The budget for a round trip to `target`, and the tier it came from.
    func estimate(_ target: RttTarget, chain: ChainHop?, staticDefault: Duration) -> (budget: Duration, tier: Tier) {
        if let chain, let e = hops[chain], e.samples > 0 { return (clamp(e), .chainHop) }
        if let e = targets[target], e.samples > 0 { return (clamp(e), .target) }
        if global.samples > 0 { return (clamp(global), .global) }
        return (staticDefault, .staticDefault)
    }

    func estimate(for target: RttTarget) -> RttEstimate? { targets[target] }
    func estimate(for hop: ChainHop) -> RttEstimate? { hops[hop] }

    private func clamp(_ e: RttEstimate) -> Duration {
        let ns = Int64(min(e.budgetNanoseconds, Double(Int64.max / 2)))
        return max(.nanoseconds(ns), minimumBudget)
    }

    /// Forgets the per-target statistics of `peer` (an idle peer's state); chain and global
    /// tiers stay.
    mutating func forget(peer: NodeID) {
        targets = targets.filter { $0.key.peer != peer }
    }

    /// Targets with statistics.
    var targetCount: Int { targets.count }
}
