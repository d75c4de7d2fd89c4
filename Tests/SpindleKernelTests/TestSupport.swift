import SpindleKernel

/// A small seeded generator (SplitMix64) so randomised tests replay exactly.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A varied envelope for codec tests.
func sampleEnvelope(_ i: Int, payloadSize: Int? = nil) -> Envelope {
    let size = payloadSize ?? (i * 7) % 50
    return Envelope(
        protocolTag: ProtocolTag(rawValue: UInt16(i % 7)),
        kind: UInt16(truncatingIfNeeded: i &* 31),
        flags: i % 2 == 0 ? [.response] : [.oneWay, .error],
        source: i % 3 == 0 ? nil : NodeID(raw: RawID128(high: UInt64(i), low: ~UInt64(i))),
        destination: i % 4 == 0 ? nil : NodeID(raw: RawID128(high: 0xDEAD_BEEF, low: UInt64(i) << 32)),
        correlation: UInt64(i) &* 0x1_0000_0001,
        sequence: UInt64(i + 1),
        stamp: HLCTimestamp(physical: 1_700_000_000_000_000_000 &+ UInt64(i), logical: UInt32(i % 5)),
        deadlineBudgetNanos: UInt64(i) * 1_000,
        payload: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ i) })
}
