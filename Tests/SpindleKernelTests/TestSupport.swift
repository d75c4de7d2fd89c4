import SpindleKernel
import SpindleSupport

/// Randomised tests draw from the runtime's seeded generator so they replay exactly.
typealias SeededRNG = SplitMix64

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

import Synchronization

/// Records what a connection handler receives, and lets a test wait for it with a timeout.
final class Received: Sendable {
    private struct State {
        var envelopes: [Envelope] = []
        var closes: [CloseReason] = []
    }
    private let state = Mutex(State())

    var handler: ConnectionHandler {
        ConnectionHandler(
            onEnvelope: { e in self.state.withLock { $0.envelopes.append(e) } },
            onClose: { r in self.state.withLock { $0.closes.append(r) } })
    }

    var envelopes: [Envelope] { state.withLock { $0.envelopes } }
    var closes: [CloseReason] { state.withLock { $0.closes } }
    var sequences: [UInt64] { envelopes.map(\.sequence) }
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Polls `condition` until it holds, failing after `timeout` (generous: the machine is loaded).
func waitUntil(_ what: String, timeout: Duration = .seconds(20),
               _ condition: @Sendable () -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !condition() {
        if clock.now > deadline { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(1))
    }
}

func envelope(_ seq: UInt64, payload: [UInt8] = []) -> Envelope {
    Envelope(protocolTag: .application, kind: 1, sequence: seq, payload: payload)
}
