import SpindleKernel
import SpindleSupport

/// Message kinds of the runner protocol (`ProtocolTag.runner`), coordinator ⇄ shard server.
///
/// ```
///  shard server                          coordinator
///      │ ── hello(shard id, reads ghosts) ────► │
///      │ ◄──────── phaseStart(round, tick, phase, delivery, ghosts, collectives…) ── │ ×3 per tick
///      │ ── phaseDone(round, result, edges, messages, ghosts, contributions) ──────► │
///      │ ◄──────── digestRequest ── │ ── digestReply(u64) ──────────────────────────► │
///      │ ◄──────── snapshotRequest ── │ ── snapshotChunk … (last) ─────────────────► │
///      │ ◄──────── restoreChunk … (last) ── │ ── restoreDone(ok | reason) ─────────► │
///      │ ◄──────── rollbackRequest(tick) ── │ ── rollbackDone(ok | reason) ────────► │
///      │ ◄──────── stop ── │
/// ```
/// Every envelope carries the sender's hybrid logical clock stamp; calls and their replies
/// share a correlation id. Snapshots travel in chunks so no frame exceeds the transport's limit.
enum RunnerMessageKind: UInt16 {
    case hello = 1
    case phaseStart = 2
    case phaseDone = 3
    case digestRequest = 4
    case digestReply = 5
    case stop = 6
    case snapshotRequest = 7
    case snapshotChunk = 8
    case restoreChunk = 9
    case restoreDone = 10
    case rollbackRequest = 11
    case rollbackDone = 12
}

/// An instruction to ghost mirrors on shard servers, in the order the coordinator applied it.
enum GhostOp: Sendable, Equatable {
    case install(GhostNode)
    case remove(NodeKey)
    /// Drop every ghost (the cache was restored from a checkpoint; installs follow).
    case clear
}

/// Coordinator → shard: run one phase.
struct PhaseRequest: Sendable {
    var round: UInt64
    var tick: UInt64
    var phase: Phase
    var placementShards: [ShardID]
    var placement: PlacementStrategy
    /// Sense: keep the state at the tick's start to roll back to.
    var saveRollbackPoint = false
    /// Decay: what other shards emitted for this shard in Act.
    var delivery = ShardDelivery()
    /// Decay: nodes of this shard to export as ghosts.
    var ghostRequests: [NodeKey] = []
    /// Sense: changes to this shard's ghost cache since the last request.
    var ghostOps: [GhostOp] = []
    /// Sense: the previous tick's collective results, encoded, by name.
    var collectives: [(name: String, value: [UInt8])] = []

    init(round: UInt64, tick: UInt64, phase: Phase, placementShards: [ShardID], placement: PlacementStrategy) {
        self.round = round
        self.tick = tick
        self.phase = phase
        self.placementShards = placementShards
        self.placement = placement
    }

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.u64(round)
        w.u64(tick)
        w.u8(phase.rawValue)
        w.placement(placement)
        w.u8(saveRollbackPoint ? 1 : 0)
        w.count(placementShards.count)
        for s in placementShards { w.u64(s.value) }
        w.count(delivery.edges.count)
        for e in delivery.edges { e.encode(into: &w) }
        w.count(delivery.messages.count)
        for m in delivery.messages {
            w.u64(m.from.value)
            w.u64(m.to.value)
            w.lengthPrefixed(m.payload)
        }
        w.count(ghostRequests.count)
        for k in ghostRequests { w.u64(k.rawValue) }
        w.count(ghostOps.count)
        for op in ghostOps {
            switch op {
            case .install(let g):
                w.u8(1)
                g.encode(into: &w)
            case .remove(let k):
                w.u8(2)
                w.u64(k.rawValue)
            case .clear:
                w.u8(3)
            }
        }
        w.namedBlobs(collectives)
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(WireDecodeError) -> PhaseRequest {
        var r = ByteReader(bytes)
        let round = try r.u64("round")
        let tick = try r.u64("tick")
        let phase = try r.phase("phase")
        let placement = try r.placement("placement")
        let at = r.offset
        let flags = try r.u8("flags")
        guard flags <= 1 else { throw WireDecodeError(field: "flags", offset: at, problem: "unknown flags \(flags)") }
        var shards: [ShardID] = []
        for _ in 0..<(try r.count("placement count", minimumSize: 8)) { shards.append(ShardID(try r.u64("placement shard"))) }
        var req = PhaseRequest(round: round, tick: tick, phase: phase, placementShards: shards, placement: placement)
        req.saveRollbackPoint = flags & 1 != 0
        var edges: [CrossShardEdge] = []
        for _ in 0..<(try r.count("edge count", minimumSize: 40)) { edges.append(try CrossShardEdge.decode(&r)) }
        req.delivery.edges = CrossShardEdges(edges)
        for _ in 0..<(try r.count("message count", minimumSize: 20)) {
            let from = ShardID(try r.u64("message source"))
            let to = ShardID(try r.u64("message target"))
            req.delivery.messages.append(ShardMessage(from: from, to: to, payload: try r.blob("message payload")))
        }
        for _ in 0..<(try r.count("ghost request count", minimumSize: 8)) { req.ghostRequests.append(NodeKey(try r.u64("ghost request"))) }
        for _ in 0..<(try r.count("ghost op count", minimumSize: 1)) {
            let at = r.offset
            switch try r.u8("ghost op") {
            case 1: req.ghostOps.append(.install(try GhostNode.decode(&r)))
            case 2: req.ghostOps.append(.remove(NodeKey(try r.u64("ghost removal"))))
            case 3: req.ghostOps.append(.clear)
            case let other: throw WireDecodeError(field: "ghost op", offset: at, problem: "unknown op \(other)")
            }
        }
        req.collectives = try r.namedBlobs("collective")
        try r.expectEnd("phase request")
        return req
    }
}

/// Shard → coordinator: a phase finished (or failed).
struct PhaseReply: Sendable {
    var round: UInt64
    var tick: UInt64
    var phase: Phase
    var shard: ShardID
    var result: Result<PhaseWork, PhaseFailure>
    var duration: Duration
    /// Sense: whether the server kept the tick-start state to roll back to (false when asked
    /// and the shard does not implement snapshots).
    var rollbackPointSaved = false

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.u64(round)
        w.u64(tick)
        w.u8(phase.rawValue)
        w.u64(shard.value)
        w.i64(duration.nanosecondsClamped)
        w.u8(rollbackPointSaved ? 1 : 0)
        switch result {
        case .failure(let f):
            w.u8(0)
            w.string(f.reason)
        case .success(let work):
            w.u8(1)
            w.u64(UInt64(work.processed))
            w.count(work.edges.count)
            for e in work.edges {
                w.u64(e.source.rawValue)
                w.u64(e.target.rawValue)
                w.i64(e.weight)
            }
            w.count(work.messages.count)
            for m in work.messages {
                w.u64(m.to.value)
                w.lengthPrefixed(m.payload)
            }
            w.count(work.ghosts.count)
            for g in work.ghosts { g.encode(into: &w) }
            w.namedBlobs(work.contributions)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(WireDecodeError) -> PhaseReply {
        var r = ByteReader(bytes)
        let round = try r.u64("round")
        let tick = try r.u64("tick")
        let phase = try r.phase("phase")
        let shard = ShardID(try r.u64("shard"))
        let duration = Duration.nanoseconds(try r.i64("duration"))
        let flagsAt = r.offset
        let flags = try r.u8("flags")
        guard flags <= 1 else { throw WireDecodeError(field: "flags", offset: flagsAt, problem: "unknown flags \(flags)") }
        let at = r.offset
        let result: Result<PhaseWork, PhaseFailure>
        switch try r.u8("outcome") {
        case 0:
            result = .failure(PhaseFailure(reason: try r.string("failure reason")))
        case 1:
            var work = PhaseWork()
            work.processed = Int(truncatingIfNeeded: try r.u64("processed"))
            for _ in 0..<(try r.count("edge count", minimumSize: 24)) {
                let s = NodeKey(try r.u64("edge source"))
                let t = NodeKey(try r.u64("edge target"))
                work.edges.append(ActOutput.PendingEdge(source: s, target: t, weight: try r.i64("edge weight")))
            }
            for _ in 0..<(try r.count("message count", minimumSize: 12)) {
                let to = ShardID(try r.u64("message target"))
                work.messages.append((to, try r.blob("message payload")))
            }
            for _ in 0..<(try r.count("ghost count", minimumSize: 28)) { work.ghosts.append(try GhostNode.decode(&r)) }
            work.contributions = try r.namedBlobs("contribution")
            result = .success(work)
        case let other:
            throw WireDecodeError(field: "outcome", offset: at, problem: "unknown outcome \(other)")
        }
        try r.expectEnd("phase reply")
        var reply = PhaseReply(round: round, tick: tick, phase: phase, shard: shard, result: result, duration: duration)
        reply.rollbackPointSaved = flags & 1 != 0
        return reply
    }
}

/// A call's answer that is either done or a reason it failed (restore, rollback).
enum CallStatus: Sendable, Equatable {
    case done
    case failed(String)

    func encode() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case .done: w.u8(1)
        case .failed(let why):
            w.u8(0)
            w.string(why)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(WireDecodeError) -> CallStatus {
        var r = ByteReader(bytes)
        let at = r.offset
        let status: CallStatus
        switch try r.u8("status") {
        case 1: status = .done
        case 0: status = .failed(try r.string("reason"))
        case let other: throw WireDecodeError(field: "status", offset: at, problem: "unknown status \(other)")
        }
        try r.expectEnd("call status")
        return status
    }
}

/// One piece of a snapshot in transit (both directions): whether it is the last, and its bytes;
/// or, from a shard server, why it has no snapshot.
enum SnapshotChunk: Sendable, Equatable {
    case piece(last: Bool, bytes: [UInt8])
    case failed(String)

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 8 + (self.bytes?.count ?? 0))
        switch self {
        case .piece(let last, let bytes):
            w.u8(last ? 2 : 1)
            w.lengthPrefixed(bytes)
        case .failed(let why):
            w.u8(0)
            w.string(why)
        }
        return w.bytes
    }

    private var bytes: [UInt8]? {
        if case .piece(_, let b) = self { return b }
        return nil
    }

    static func decode(_ bytes: [UInt8]) throws(WireDecodeError) -> SnapshotChunk {
        var r = ByteReader(bytes)
        let at = r.offset
        let chunk: SnapshotChunk
        switch try r.u8("chunk kind") {
        case 0: chunk = .failed(try r.string("reason"))
        case 1: chunk = .piece(last: false, bytes: try r.blob("chunk bytes"))
        case 2: chunk = .piece(last: true, bytes: try r.blob("chunk bytes"))
        case let other: throw WireDecodeError(field: "chunk kind", offset: at, problem: "unknown kind \(other)")
        }
        try r.expectEnd("snapshot chunk")
        return chunk
    }

    /// Splits `bytes` into chunks of at most `size` bytes (one empty chunk for no bytes).
    static func split(_ bytes: [UInt8], size: Int) -> [SnapshotChunk] {
        let size = max(1, size)
        guard !bytes.isEmpty else { return [.piece(last: true, bytes: [])] }
        var out: [SnapshotChunk] = []
        var start = 0
        while start < bytes.count {
            let end = min(start + size, bytes.count)
            out.append(.piece(last: end == bytes.count, bytes: Array(bytes[start..<end])))
            start = end
        }
        return out
    }
}

extension CrossShardEdge {
    func encode(into w: inout ByteWriter) {
        w.u64(source.rawValue)
        w.u64(target.rawValue)
        w.u64(sourceShard.value)
        w.u64(targetShard.value)
        w.i64(weight)
    }

    static func decode(_ r: inout ByteReader) throws(WireDecodeError) -> CrossShardEdge {
        let s = NodeKey(try r.u64("edge source"))
        let t = NodeKey(try r.u64("edge target"))
        let ss = ShardID(try r.u64("edge source shard"))
        let ts = ShardID(try r.u64("edge target shard"))
        return CrossShardEdge(source: s, target: t, sourceShard: ss, targetShard: ts, weight: try r.i64("edge weight"))
    }
}

extension GhostNode {
    func encode(into w: inout ByteWriter) {
        w.u64(key.rawValue)
        w.u64(owner.value)
        w.u64(tick)
        w.lengthPrefixed(payload)
    }

    static func decode(_ r: inout ByteReader) throws(WireDecodeError) -> GhostNode {
        let k = NodeKey(try r.u64("ghost key"))
        let o = ShardID(try r.u64("ghost owner"))
        let t = try r.u64("ghost tick")
        return GhostNode(key: k, owner: o, tick: t, payload: try r.blob("ghost payload"))
    }
}

extension ByteWriter {
    mutating func placement(_ p: PlacementStrategy) {
        switch p {
        case .hashed(let v):
            u8(1)
            u64(UInt64(clamping: v))
        case .ranges(let n):
            u8(2)
            u64(n)
        }
    }

    mutating func namedBlobs(_ items: [(name: String, value: [UInt8])]) {
        count(items.count)
        for (name, value) in items {
            string(name)
            lengthPrefixed(value)
        }
    }
}

extension ByteReader {
    mutating func placement(_ field: String) throws(WireDecodeError) -> PlacementStrategy {
        let at = offset
        let kind = try u8(field)
        let value = try u64(field)
        switch kind {
        case 1:
            guard value >= 1, value <= 1 << 20 else {
                throw WireDecodeError(field: field, offset: at, problem: "\(value) virtual nodes is out of range")
            }
            return .hashed(virtualNodes: Int(value))
        case 2:
            guard value >= 1 else { throw WireDecodeError(field: field, offset: at, problem: "key count 0") }
            return .ranges(keyCount: value)
        default:
            throw WireDecodeError(field: field, offset: at, problem: "unknown placement kind \(kind)")
        }
    }

    mutating func namedBlobs(_ field: String) throws(WireDecodeError) -> [(name: String, value: [UInt8])] {
        var out: [(name: String, value: [UInt8])] = []
        for _ in 0..<(try count("\(field) count", minimumSize: 8)) {
            let name = try string("\(field) name")
            out.append((name, try blob("\(field) value")))
        }
        return out
    }
}
