import SpindleEventLoop
@_spi(SpindleTransportInternals) import SpindleKernel
import Testing
@testable import SpindleTCP

/// Zero-copy receiving (`ConnectionHandler(onEnvelopeView:)`) and batched sending
/// (`send(contentsOf:)`) over real sockets.
@Suite("TCP views and batches", .timeLimit(.minutes(1)))
struct TCPViewAndBatchTests {
    static let localhost = Address.tcp(host: "127.0.0.1", port: 0)
    static let sender = NodeID(raw: RawID128(high: 7, low: 1))

    /// Envelopes of every header shape and sizes from empty to larger than one 64 KiB read.
    static func mixed(_ i: Int) -> Envelope {
        let size = i % 50 == 0 ? 100_000 + i : (i * 37) % 300
        return Envelope(protocolTag: ProtocolTag(rawValue: UInt16(i % 5)), kind: UInt16(i % 9),
                        flags: i % 2 == 0 ? [.oneWay] : [],
                        source: i % 3 == 0 ? Self.sender : nil,   // one connection, one source
                        destination: i % 4 == 0 ? NodeID(raw: RawID128(high: 2, low: UInt64(i))) : nil,
                        correlation: UInt64(i % 6), sequence: UInt64(i),
                        stamp: i % 7 == 0 ? .zero : HLCTimestamp(physical: UInt64(i) << 20, logical: UInt32(i % 3)),
                        deadlineBudgetNanos: UInt64(i % 5) * 1000,
                        payload: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ i) })
    }

    @Test("a view handler receives every field and payload byte, in order, across reads")
    func viewsCarryEverything() async throws {
        try await withTransport { transport, _ in
            let received = Collector<Envelope>()
            let listener = try await transport.listen(on: Self.localhost) { conn in
                conn.start(ConnectionHandler(
                    onEnvelopeView: { view in received.append(view.envelope) },
                    onClose: { _ in }))
            }
            let conn = try await transport.connect(to: listener.address)
            let sent = (0..<600).map(Self.mixed)
            for e in sent {
                try conn.send(e)
                try await conn.waitUntilWritable()
            }
            let got = try await received.wait(count: sent.count, timeout: .seconds(30), "views")
            #expect(got == sent)
        }
    }

    @Test("send(contentsOf:) delivers a batch in order, interleaved correctly with single sends")
    func batchInOrder() async throws {
        try await withEchoClient { conn, received, _ in
            let first = (0..<300).map(Self.mixed)
            try conn.send(contentsOf: Array(first[..<100]))
            try conn.send(first[100])
            try conn.send(contentsOf: Array(first[101...]))
            try conn.send(contentsOf: [])
            let got = try await received.wait(count: first.count, timeout: .seconds(30), "the echoed batch")
            #expect(got == first)
        }
    }

    @Test("a batch with one unframeable envelope is refused whole; the connection carries on")
    func batchRefusedWhole() async throws {
        var config = TCPTransport.Configuration()
        config.maxFrameSize = 4096
        try await withEchoClient(config) { conn, received, _ in
            let big = envelope(2, payload: [UInt8](repeating: 1, count: 5000))
            let bigSize = FrameEncoder.frameSize(of: big)
            #expect(throws: TransportError.frameTooLarge(size: bigSize, limit: 4096)) {
                try conn.send(contentsOf: [envelope(1), big, envelope(3)])
            }
            try conn.send(contentsOf: [envelope(4), envelope(5)])
            let got = try await received.wait(count: 2, "the batch after the refused one")
            #expect(got == [envelope(4), envelope(5)])
        }
    }

    @Test("send(encodedFrames:) carries pre-encoded frames as they are, in order with other sends")
    func encodedFramesArrive() async throws {
        try await withEchoClient { conn, received, _ in
            #expect(!conn.deliversDuringSend)
            let sent = (0..<200).map(Self.mixed)
            var frames: [UInt8] = []
            for e in sent[1..<199] { try FrameEncoder().encode(e, into: &frames) }
            try conn.send(sent[0])
            try frames.withUnsafeBytes { try conn.send(encodedFrames: $0) }
            try conn.send(sent[199])
            let got = try await received.wait(count: sent.count, timeout: .seconds(30), "the echoed frames")
            #expect(got == sent)
        }
    }

    @Test("send(encodedFrames:) refuses bytes that are not whole frames and queues none of them")
    func encodedFramesRefused() async throws {
        var config = TCPTransport.Configuration()
        config.maxFrameSize = 4096
        try await withEchoClient(config) { conn, received, closes in
            let good = try FrameEncoder().encode(envelope(1))
            // A whole frame followed by half of another.
            let truncated = good + good.prefix(5)
            // Garbage after a whole frame: the error names the offset of the bad magic.
            let garbage = good + [0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 0, 0, 0, 0, 0]
            let big = try FrameEncoder().encode(envelope(2, payload: [UInt8](repeating: 1, count: 5000)))
            for (bytes, what) in [(truncated, "truncated"), (garbage, "garbage")] {
                let outcome = bytes.withUnsafeBytes { raw in
                    Result { () throws(TransportError) in try conn.send(encodedFrames: raw) }
                }
                guard case .failure(.invalidFrames(let text)) = outcome else {
                    Issue.record("\(what): expected invalidFrames, got \(outcome)")
                    continue
                }
                #expect(text.contains("byte \(good.count)"), "\(what): \(text)")
            }
            #expect(throws: TransportError.frameTooLarge(size: big.count, limit: 4096)) {
                try big.withUnsafeBytes { try conn.send(encodedFrames: $0) }
            }
            try conn.send(envelope(3))
            let got = try await received.wait(count: 1, "the envelope after the refused frames")
            #expect(got == [envelope(3)])
            #expect(closes.items.isEmpty)
        }
    }

    @Test("a view-batch handler gets each read's views, in order, frames split across reads included")
    func viewBatches() async throws {
        try await withTransport { transport, _ in
            let received = Collector<Envelope>()
            let batchSizes = Collector<Int>()
            let ownedCalls = Collector<Int>()
            let listener = try await transport.listen(on: Self.localhost) { conn in
                conn.start(ConnectionHandler(
                    onEnvelopes: { batch in ownedCalls.append(batch.count) },
                    onEnvelopeViews: { views in
                        batchSizes.append(views.count)
                        for v in views { received.append(v.envelope) }
                    },
                    onClose: { _ in }))
            }
            let conn = try await transport.connect(to: listener.address)
            // Frames of up to 100 kB, so some are completed from bytes kept from earlier reads.
            let sent = (0..<600).map(Self.mixed)
            try conn.send(contentsOf: sent)
            let got = try await received.wait(count: sent.count, timeout: .seconds(30), "views")
            #expect(got == sent)
            #expect(ownedCalls.items.isEmpty)
            #expect(batchSizes.items.contains { $0 > 1 }, "reads holding several frames arrive as one batch")
        }
    }

    @Test("closing from inside a view handler stops delivery after that envelope")
    func closeInsideViewHandler() async throws {
        try await withTransport { transport, _ in
            let seen = Collector<UInt64>(), closes = Collector<CloseReason>()
            let listener = try await transport.listen(on: Self.localhost) { conn in
                conn.start(ConnectionHandler(
                    onEnvelopeView: { view in
                        seen.append(view.sequence)
                        if view.sequence == 3 { conn.close() }
                    },
                    onClose: { closes.append($0) }))
            }
            let conn = try await transport.connect(to: listener.address)
            // One batch: all ten arrive in one read, so the close happens mid-read.
            try conn.send(contentsOf: (1...10).map { envelope($0) })
            #expect(try await closes.first("the server's close") == .closedLocally)
            #expect(try await seen.wait(count: 3, "views before the close") == [1, 2, 3])
        }
    }

    @Test("sends after close fail with the close reason, single and batched")
    func sendAfterClose() async throws {
        try await withEchoClient { conn, _, closes async throws in
            conn.close()
            #expect(try await closes.first("the close") == .closedLocally)
            #expect(throws: TransportError.closed(.closedLocally)) { try conn.send(envelope(1)) }
            #expect(throws: TransportError.closed(.closedLocally)) { try conn.send(contentsOf: [envelope(1)]) }
        }
    }
}
