import SpindleKernel
import Testing
@testable import SpindleTCP

/// A reliable link over SpindleTCP: batched reads (`ConnectionHandler(onEnvelopes:)`), acks
/// coalesced per read, and `send(contentsOf:)`.
@Suite("Reliable link over TCP", .timeLimit(.minutes(1)))
struct ReliableOverTCPTests {
    @Test("20 000 messages, single and batched sends, arrive once each and in order")
    func inOrderExactlyOnce() async throws {
        try await withTransport { transport, _ in
            let delivered = Collector<UInt64>()
            let listener = try await ReliableListener.listen(over: transport, on: .tcp(host: "127.0.0.1", port: 0)) { _ in
                ReliableLink.Handler(onDeliver: { delivered.append($0.correlation) }, onUndeliverable: { _, _ in })
            }
            let link = ReliableLink.connect(over: transport, to: listener.address,
                                            handler: .init(onDeliver: { _ in }, onUndeliverable: { _, _ in }))
            var next: UInt64 = 1
            while next <= 20_000 {
                if next % 3 == 0 {
                    let batch = (next..<min(next + 500, 20_001)).map { Envelope(protocolTag: .application, kind: 1, correlation: $0, payload: [7]) }
                    try link.send(contentsOf: batch)
                    next += UInt64(batch.count)
                } else {
                    try link.send(Envelope(protocolTag: .application, kind: 1, correlation: next, payload: [7]))
                    next += 1
                }
            }
            let got = try await delivered.wait(count: 20_000, timeout: .seconds(30), "delivered messages")
            #expect(got == Array(1...20_000))
            // Acks (at most one per read) drain the sender's queue.
            let clock = SystemClock()
            let deadline = clock.now() + .seconds(10)
            while link.queuedCount > 0 && clock.now() < deadline { await Task.yield() }
            #expect(link.queuedCount == 0)
            #expect(link.statistics.duplicatesDropped == 0 && link.statistics.retransmitted == 0)
            await link.shutdown()
            await listener.shutdown()
        }
    }
}
