import SpindleKernel
import SpindleSupport
import Testing
@testable import SpindleRunner

@Suite("Runner wire messages")
struct WireTests {
    func sampleRequest() -> PhaseRequest {
        let edge = CrossShardEdge(source: NodeKey(1), target: NodeKey(2), sourceShard: ShardID(1), targetShard: ShardID(2), weight: -3)
        var r = PhaseRequest(round: 9, tick: 4, phase: .decay, placementShards: [ShardID(1), ShardID(2)],
                             placement: .ranges(keyCount: 512))
        r.saveRollbackPoint = true
        r.collectives = [("agents", [1, 2]), ("empty", [])]
        r.delivery = ShardDelivery(edges: [edge], messages: [ShardMessage(from: ShardID(1), to: ShardID(2), payload: [7, 8])])
        r.ghostRequests = [NodeKey(5)]
        r.ghostOps = [.install(GhostNode(key: NodeKey(3), owner: ShardID(1), tick: 3, payload: [1])), .remove(NodeKey(4)), .clear]
        return r
    }

    func sampleReply() -> PhaseReply {
        var work = PhaseWork(processed: 12)
        work.edges = [ActOutput.PendingEdge(source: NodeKey(1), target: NodeKey(9), weight: 2)]
        work.messages = [(ShardID(2), [1, 2, 3])]
        work.ghosts = [GhostNode(key: NodeKey(9), owner: ShardID(1), tick: 4, payload: [])]
        work.contributions = [("sum", Array("42".utf8))]
        var reply = PhaseReply(round: 9, tick: 4, phase: .act, shard: ShardID(1), result: .success(work), duration: .microseconds(5))
        reply.rollbackPointSaved = true
        return reply
    }

    @Test("requests and replies round-trip")
    func roundTrip() throws {
        let r = sampleRequest()
        let back = try PhaseRequest.decode(r.encode())
        #expect(back.round == 9 && back.tick == 4 && back.phase == .decay && back.placement == .ranges(keyCount: 512))
        #expect(back.saveRollbackPoint && back.collectives.map(\.name) == ["agents", "empty"])
        #expect(back.collectives.map(\.value) == [[1, 2], []])
        #expect(back.placementShards == r.placementShards && back.ghostRequests == r.ghostRequests)
        #expect(back.delivery.edges == r.delivery.edges && back.delivery.messages == r.delivery.messages)
        #expect(back.ghostOps == r.ghostOps)
        let reply = try PhaseReply.decode(sampleReply().encode())
        guard case .success(let w) = reply.result else { Issue.record("lost the result"); return }
        #expect(w.processed == 12 && w.edges == [ActOutput.PendingEdge(source: NodeKey(1), target: NodeKey(9), weight: 2)])
        #expect(w.messages.map(\.payload) == [[1, 2, 3]] && w.ghosts.count == 1 && reply.duration == .microseconds(5))
        #expect(w.contributions.map(\.name) == ["sum"] && reply.rollbackPointSaved)
        let failed = PhaseReply(round: 1, tick: 1, phase: .sense, shard: ShardID(3), result: .failure(PhaseFailure(reason: "no")), duration: .zero)
        guard case .failure(let f) = try PhaseReply.decode(failed.encode()).result else { Issue.record("lost the failure"); return }
        #expect(f.reason == "no")
    }

    @Test("a malformed message's error names the field, its byte offset and what was wrong")
    func namedErrors() throws {
        let reply = sampleReply().encode()
        // Cut inside `tick` (bytes 8..<16): the field after `round`.
        do {
            _ = try PhaseReply.decode(Array(reply[0..<12]))
            Issue.record("accepted a truncated reply")
        } catch {
            #expect(error.field == "tick" && error.offset == 8, "\(error)")
            #expect(error.problem.contains("truncated") && error.problem.contains("4 left"), "\(error)")
            #expect(error.description.hasPrefix("malformed runner message: tick at byte 8"), "\(error)")
        }
        // A phase byte that is no phase.
        var bad = reply
        bad[16] = 9
        #expect(throws: WireDecodeError.self) { try PhaseReply.decode(bad) }
        do { _ = try PhaseReply.decode(bad) } catch {
            #expect(error.field == "phase" && error.offset == 16 && error.problem == "unknown phase 9")
        }
        // Trailing bytes after a complete message.
        do {
            _ = try CallStatus.decode(CallStatus.done.encode() + [0])
            Issue.record("accepted trailing bytes")
        } catch {
            #expect(error.field == "call status" && error.offset == 1 && error.problem.contains("1 unexpected"), "\(error)")
        }
        // A string that is not UTF-8.
        var w = ByteWriter()
        w.u8(0)
        w.lengthPrefixed([0xFF, 0xFE])
        do {
            _ = try CallStatus.decode(w.bytes)
            Issue.record("accepted a reason that is not UTF-8")
        } catch {
            #expect(error.field == "reason" && error.offset == 1 && error.problem.contains("UTF-8"), "\(error)")
        }
    }

    @Test("every truncation and corruption decodes to a typed error or a value, never a crash")
    func malformed() {
        let request = sampleRequest().encode()
        let reply = sampleReply().encode()
        for cut in 0..<request.count {
            let prefix = Array(request[0..<cut])
            #expect(throws: WireDecodeError.self) { try PhaseRequest.decode(prefix) }
        }
        for cut in 0..<reply.count {
            let prefix = Array(reply[0..<cut])
            #expect(throws: WireDecodeError.self) { try PhaseReply.decode(prefix) }
        }
        // Any bytes given to the other messages' decoders: a value or a typed error.
        for bytes in [request, reply] {
            for cut in 0..<bytes.count {
                let prefix = Array(bytes[0..<cut])
                _ = try? PhaseRequest.decode(prefix)
                _ = try? PhaseReply.decode(prefix)
                _ = try? SnapshotChunk.decode(prefix)
                _ = try? CallStatus.decode(prefix)
            }
        }
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2_000 {
            var b = rng.next() & 1 == 0 ? request : reply
            for _ in 0..<(1 + Int(rng.next() % 4)) { b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? PhaseRequest.decode(b)
            _ = try? PhaseReply.decode(b)
        }
        // A huge count is refused before anything is allocated, naming the field and offset.
        var w = ByteWriter()
        w.u64(1); w.u64(1); w.u8(1); w.placement(.hashed(virtualNodes: 256)); w.u8(0); w.u32(.max)
        do {
            _ = try PhaseRequest.decode(w.bytes)
            Issue.record("accepted a count larger than the message")
        } catch {
            #expect(error.field == "placement count" && error.offset == 27)
        }
    }
}
