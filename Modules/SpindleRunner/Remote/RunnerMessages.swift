import SpindleKernel

/// Message kinds of the runner protocol (`ProtocolTag.runner`), coordinator ⇄ shard server.
///
/// ```
///  shard server                          coordinator
///      │ ── hello(shard id) ──────────────────► │
///      │ ◄──────── phaseStart(round, tick, phase, delivery, ghosts…) ── │   ×3 per tick
///      │ ── phaseDone(round, result, edges, messages, ghosts) ───────► │
///      │ ◄──────── digestRequest ── │ ── digestReply(u64) ──────────► │
///      │ ◄──────── stop ── │
/// ```
/// Every envelope carries the sender's hybrid logical clock stamp.
enum RunnerMessageKind: UInt16 {
    case hello = 1
    case phaseStart = 2
    case phaseDone = 3
    case digestRequest = 4
    case digestReply = 5
    case stop = 6
}

/// An instruction to ghost mirrors on shard servers, in the order the coordinator applied it.
enum GhostOp: Sendable, Equatable {
    case install(GhostNode)
    case remove(NodeKey)
}

/// Coordinator → shard: run one phase.
struct PhaseRequest: Sendable {
    var round: UInt64
    var tick: UInt64
    var phase: Phase
    var placementShards: [ShardID]
    var virtualNodes: Int
    /// Decay: what other shards emitted for this shard in Act.
    var delivery = ShardDelivery()
    /// Decay: nodes of this shard to export as ghosts.
    var ghostRequests: [NodeKey] = []
    /// Sense: changes to this shard's ghost cache since the last request.
    var ghostOps: [GhostOp] = []

    func encode() -> [UInt8] {
        var w = WireWriter(capacity: 64)
        w.u64(round)
        w.u64(tick)
        w.u8(phase.rawValue)
        w.count(virtualNodes)
        w.count(placementShards.count)
        for s in placementShards { w.u64(s.value) }
        w.count(delivery.edges.count)
        for e in delivery.edges { e.encode(into: &w) }
        w.count(delivery.messages.count)
        for m in delivery.messages {
            w.u64(m.from.value)
            w.u64(m.to.value)
            w.blob(m.payload)
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
            }
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(WireDecodeError) -> PhaseRequest {
        var r = WireReader(bytes)
        let round = try r.u64("round")
        let tick = try r.u64("tick")
        let phase = try r.phase("phase")
        let vnodes = Int(try r.u32("virtual nodes"))
        var shards: [ShardID] = []
        for _ in 0..<(try r.count("placement count", minimumSize: 8)) { shards.append(ShardID(try r.u64("placement shard"))) }
        var req = PhaseRequest(round: round, tick: tick, phase: phase, placementShards: shards, virtualNodes: vnodes)
        for _ in 0..<(try r.count("edge count", minimumSize: 40)) { req.delivery.edges.append(try CrossShardEdge.decode(&r)) }
        for _ in 0..<(try r.count("message count", minimumSize: 20)) {
            let from = ShardID(try r.u64("message source"))
            let to = ShardID(try r.u64("message target"))
            req.delivery.messages.append(ShardMessage(from: from, to: to, payload: try r.blob("message payload")))
        }
        for _ in 0..<(try r.count("ghost request count", minimumSize: 8)) { req.ghostRequests.append(NodeKey(try r.u64("ghost request"))) }
        for _ in 0..<(try r.count("ghost op count", minimumSize: 9)) {
            let at = r.offset
            switch try r.u8("ghost op") {
            case 1: req.ghostOps.append(.install(try GhostNode.decode(&r)))
            case 2: req.ghostOps.append(.remove(NodeKey(try r.u64("ghost removal"))))
            case let other: throw WireDecodeError(field: "ghost op", offset: at, problem: "unknown op \(other)")
            }
        }
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

    func encode() -> [UInt8] {
        var w = WireWriter(capacity: 64)
        w.u64(round)
        w.u64(tick)
        w.u8(phase.rawValue)
        w.u64(shard.value)
        w.i64(duration.nanosecondsClamped)
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
                w.blob(m.payload)
            }
            w.count(work.ghosts.count)
            for g in work.ghosts { g.encode(into: &w) }
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(WireDecodeError) -> PhaseReply {
        var r = WireReader(bytes)
        let round = try r.u64("round")
        let tick = try r.u64("tick")
        let phase = try r.phase("phase")
        let shard = ShardID(try r.u64("shard"))
        let duration = Duration.nanoseconds(try r.i64("duration"))
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
            result = .success(work)
        case let other:
            throw WireDecodeError(field: "outcome", offset: at, problem: "unknown outcome \(other)")
        }
        try r.expectEnd("phase reply")
        return PhaseReply(round: round, tick: tick, phase: phase, shard: shard, result: result, duration: duration)
    }
}

extension CrossShardEdge {
    func encode(into w: inout WireWriter) {
        w.u64(source.rawValue)
        w.u64(target.rawValue)
        w.u64(sourceShard.value)
        w.u64(targetShard.value)
        w.i64(weight)
    }

    static func decode(_ r: inout WireReader) throws(WireDecodeError) -> CrossShardEdge {
        let s = NodeKey(try r.u64("edge source"))
        let t = NodeKey(try r.u64("edge target"))
        let ss = ShardID(try r.u64("edge source shard"))
        let ts = ShardID(try r.u64("edge target shard"))
        return CrossShardEdge(source: s, target: t, sourceShard: ss, targetShard: ts, weight: try r.i64("edge weight"))
    }
}

extension GhostNode {
    func encode(into w: inout WireWriter) {
        w.u64(key.rawValue)
        w.u64(owner.value)
        w.u64(tick)
        w.blob(payload)
    }

    static func decode(_ r: inout WireReader) throws(WireDecodeError) -> GhostNode {
        let k = NodeKey(try r.u64("ghost key"))
        let o = ShardID(try r.u64("ghost owner"))
        let t = try r.u64("ghost tick")
        return GhostNode(key: k, owner: o, tick: t, payload: try r.blob("ghost payload"))
    }
}
