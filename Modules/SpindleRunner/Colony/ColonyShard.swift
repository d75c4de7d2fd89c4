import SpindleKernel
import SpindleSupport
import Synchronization

/// One shard of the colony: agents on a graph depositing signal that diffuses across edges and
/// decays; agents moving between shards leave trail edges.
///
/// Everything is integer arithmetic, every cross-node effect (diffusion, deposits, trails,
/// moving agents) is applied at delivery through order-independent sums, and every random
/// choice comes from (seed, agent, tick): the final state from a seed is the same for any
/// number of shards and any placement, in-process or remote. `stateDigest()` summarises it.
///
/// Per tick:
/// - Sense: each agent decides to stay or to move to a neighbour (from its node's signal and
///   its random stream).
/// - Act: each node sends a share of its signal to each neighbour; each agent deposits on its
///   node and moves; what crosses to another shard goes as one message per target shard, and
///   each agent crossing emits a cross-shard trail edge.
/// - Decay: inflows, deposits, trails and arriving agents are applied; signal and trails decay.
///
/// A shard keeps its nodes' state in arrays of its own nodes only, and precomputes for each
/// node which neighbours are its own (an array index) and which are another shard's (that
/// shard's position), so a placement that keeps neighbours together (`localityPlacement`)
/// makes most of the work local.
public final class ColonyShard: Shard {
    public let id: ShardID
    public let configuration: ColonyConfiguration
    private let layout: ColonyLayout
    private let state: Mutex<ColonyState>

    /// A shard owning the nodes `placement` puts on `id`, with the agents that start on them.
    public convenience init(id: ShardID, configuration: ColonyConfiguration, placement: ShardPlacement) {
        self.init(id: id, partition: ColonyPartition(configuration: configuration, placement: placement))
    }

    init(id: ShardID, partition: ColonyPartition) {
        self.id = id
        self.configuration = partition.configuration
        let layout = ColonyLayout(id: id, partition: partition)
        self.layout = layout
        state = Mutex(ColonyState(layout: layout))
    }

    /// Shards `1…count` of a colony, registered with `coordinator` (whose placement then decides
    /// which shard owns which node). With `placement`, the coordinator places by it from now on
    /// (`configuration.localityPlacement` keeps ring neighbours together); a runner must use
    /// the same placement.
    public static func makeShards(count: Int, configuration: ColonyConfiguration, coordinator: Coordinator,
                                  placement: PlacementStrategy? = nil) throws(RunnerError) -> [ColonyShard] {
        if let placement { coordinator.usePlacement(placement) }
        let ids = (1...max(1, count)).map { ShardID(UInt64($0)) }
        let registered = Set(coordinator.membership.shards)
        for id in ids where !registered.contains(id) { try coordinator.register(id) }
        let partition = ColonyPartition(configuration: configuration, placement: coordinator.placement)
        return ids.map { ColonyShard(id: $0, partition: partition) }
    }

    /// A summary of this shard's part of the colony.
    public var summary: ColonySummary {
        state.withLock { s in
            ColonySummary(nodes: layout.owned.count, agents: s.agents.count,
                          totalSignal: s.signal.reduce(0, &+), totalTrail: s.trail.reduce(0, &+))
        }
    }

    /// The smallest and largest signal among this shard's nodes (nil without nodes).
    var signalBounds: (min: Int64, max: Int64)? {
        state.withLock { s in s.signal.isEmpty ? nil : (s.signal.min()!, s.signal.max()!) }
    }

    public func sense(_ context: ShardContext) throws -> Int {
        state.withLock { s in
            s.plan.removeAll(keepingCapacity: true)
            plan(&s.plan, agents: s.agents, signal: s.signal, tick: context.tick)
            return s.agents.count
        }
    }

    /// Each agent's move: stay, or the neighbour its random stream picks.
    private func plan(_ plan: inout [Int32], agents: [ColonyAgent], signal: [Int64], tick: UInt64) {
        let seed = configuration.seed
        plan.reserveCapacity(agents.count)
        layout.graph.offsets.withUnsafeBufferPointer { offsets in
            layout.graph.neighbours.withUnsafeBufferPointer { neighbours in
                signal.withUnsafeBufferPointer { signal in
                    for a in agents {
                        let v = Int(a.node)
                        let r = ColonyRandom.value(seed, a.id, tick)
                        // The stronger the node's signal, the likelier the agent stays to feed it.
                        let stayPer1024 = min(900, signal[layout.place(v)] >> 12)
                        if Int64(r & 1023) < stayPer1024 {
                            plan.append(Int32(v))
                        } else {
                            let lo = Int(offsets[v]), count = Int(offsets[v + 1]) - lo
                            plan.append(neighbours[lo + Int((r >> 10) % UInt64(count))])
                        }
                    }
                }
            }
        }
    }

    public func act(_ context: ShardContext, output: inout ActOutput) throws -> Int {
        try state.withLock { (s: inout ColonyState) throws -> Int in
            guard s.plan.count == s.agents.count else {
                throw ColonyError(shard: id, tick: context.tick,
                                  problem: "act without a matching sense (\(s.plan.count) plans for \(s.agents.count) agents)")
            }
            guard context.placement == layout.placement else {
                throw ColonyError(shard: id, tick: context.tick,
                                  problem: "the runner's placement (\(context.placement.strategy.name) over \(context.placement.shards)) is not the one the colony was partitioned with (\(layout.placement.strategy.name) over \(layout.placement.shards)); colony shards do not rebalance")
            }
            s.clearOutgoing()
            diffuse(signal: &s.signal, inflow: &s.inflow, outgoing: &s.outgoing)
            // Deposits and moves.
            let deposit = configuration.deposit
            var staying = s.spareAgents
            staying.removeAll(keepingCapacity: true)
            staying.reserveCapacity(s.agents.count)
            for (i, var a) in s.agents.enumerated() {
                let v = Int(a.node)
                s.inflow[layout.place(v)] += deposit   // an agent stands on one of this shard's nodes
                let w = Int(s.plan[i])
                if w != v { a.steps += 1 }
                a.node = UInt64(w)
                let lw = layout.place(w)
                if lw >= 0 {
                    if w != v { s.pendingTrail[lw] += 1 }
                    staying.append(a)
                } else {
                    s.outAgents[-lw - 1].append(a)
                    output.emitEdge(from: NodeKey(UInt64(v)), to: NodeKey(UInt64(w)), weight: 1)
                }
            }
            s.spareAgents = s.agents
            s.agents = staying
            s.plan.removeAll(keepingCapacity: true)
            for p in 0..<layout.placement.shards.count where p != layout.position {
                if let payload = s.encodeTransfer(to: p) { output.send(payload, to: layout.placement.shards[p]) }
            }
            return layout.owned.count
        }
    }

    /// Each node sends a share of its signal (as Sense saw it) to each neighbour: into its own
    /// nodes' inflow, or into the slot of the outgoing buffer that the neighbour's shard reads
    /// for that edge (the halo plan).
    private func diffuse(signal: inout [Int64], inflow: inout [Int64], outgoing: inout [Int64]) {
        let per1024 = configuration.diffusionPer1024
        let count = layout.owned.count
        layout.start.withUnsafeBufferPointer { start in
            layout.split.withUnsafeBufferPointer { split in
                layout.code.withUnsafeBufferPointer { code in
                    signal.withUnsafeMutableBufferPointer { signal in
                        inflow.withUnsafeMutableBufferPointer { inflow in
                            outgoing.withUnsafeMutableBufferPointer { outgoing in
                                for i in 0..<count {
                                    let share = signal[i] * per1024 / 1024
                                    let lo = Int(start[i]), mid = Int(split[i]), hi = Int(start[i + 1])
                                    signal[i] -= share * Int64(hi - lo)
                                    for j in lo..<mid { inflow[Int(code[j])] += share }
                                    // Every slot is written every tick (zero shares too).
                                    for j in mid..<hi { outgoing[Int(code[j])] = share }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    public func deliver(_ delivery: ShardDelivery, context: ShardContext) throws {
        try state.withLock { (s: inout ColonyState) throws in
            for e in delivery.edges {
                let w = e.target.rawValue
                let lw = w < UInt64(layout.nodeCount) ? layout.local(Int(w)) : -1
                guard lw >= 0 else {
                    throw ColonyError(shard: id, tick: context.tick, problem: "trail edge for \(e.target), not owned here")
                }
                s.pendingTrail[lw] += e.weight
            }
            var arrived = false
            for m in delivery.messages {
                try applyTransfer(m.payload, from: m.from, tick: context.tick, into: &s)
                arrived = true
            }
            if arrived { s.agents.sort { $0.id < $1.id } }
        }
    }

    /// Applies another shard's transfer: signal flowing into this shard's nodes (one amount per
    /// edge of the halo plan from that shard, in plan order), agents moving in.
    private func applyTransfer(_ payload: [UInt8], from: ShardID, tick: UInt64, into s: inout ColonyState) throws {
        func corrupt(_ what: String) -> ColonyError {
            ColonyError(shard: id, tick: tick, problem: "transfer from \(from): \(what)")
        }
        guard let source = layout.placement.shards.firstIndex(of: from), source != layout.position else {
            throw corrupt("not a shard of this colony's placement")
        }
        try layout.haloIn[source].withUnsafeBufferPointer { targets in
            try payload.withUnsafeBytes { raw in
                var at = 0
                func count(_ size: Int) throws -> Int {
                    guard raw.count - at >= 4 else { throw corrupt("truncated at byte \(at)") }
                    let n = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                    at += 4
                    guard n <= (raw.count - at) / size else { throw corrupt("count \(n) at byte \(at - 4) exceeds the bytes left") }
                    return n
                }
                let inflows = try count(8)
                guard inflows == targets.count else {
                    throw corrupt("\(inflows) inflows; the halo plan from it has \(targets.count) edges")
                }
                // The plan's targets are this shard's local indices by construction.
                s.inflow.withUnsafeMutableBufferPointer { inflow in
                    for k in 0..<inflows {
                        inflow[Int(targets[k])] += Int64(littleEndian: raw.loadUnaligned(fromByteOffset: at + k * 8, as: Int64.self))
                    }
                }
                at += inflows * 8
                let agents = try count(24)
                for k in 0..<agents {
                    let base = at + k * 24
                    let a = ColonyAgent(id: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base, as: UInt64.self)),
                                        node: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self)),
                                        steps: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 16, as: UInt64.self)))
                    guard a.node < UInt64(layout.nodeCount), layout.local(Int(a.node)) >= 0 else {
                        throw corrupt("agent \(a.id) arrives at node \(a.node), not owned here")
                    }
                    s.agents.append(a)
                }
                at += agents * 24
                guard at == raw.count else { throw corrupt("\(raw.count - at) unexpected trailing bytes") }
            }
        }
    }

    public func decay(_ context: ShardContext) throws -> Int {
        state.withLock { s in
            ColonyShard.decay(signal: &s.signal, trail: &s.trail, inflow: &s.inflow, pending: &s.pendingTrail,
                              per1024: configuration.decayPer1024)
            return layout.owned.count
        }
    }

    /// Applies inflows and trails, then decays signal and trail.
    private static func decay(signal: inout [Int64], trail: inout [Int64], inflow: inout [Int64],
                              pending: inout [Int64], per1024: Int64) {
        let count = signal.count
        signal.withUnsafeMutableBufferPointer { signal in
            trail.withUnsafeMutableBufferPointer { trail in
                inflow.withUnsafeMutableBufferPointer { inflow in
                    pending.withUnsafeMutableBufferPointer { pending in
                        for i in 0..<count {
                            var sg = signal[i] + inflow[i]
                            inflow[i] = 0
                            var tr = trail[i] + (pending[i] << 16)
                            pending[i] = 0
                            sg -= sg * per1024 / 1024
                            tr -= tr * per1024 / 1024
                            signal[i] = sg
                            trail[i] = tr
                        }
                    }
                }
            }
        }
    }

    /// Ghost payload: the node's signal and trail (16 little-endian bytes).
    public func ghostNodes(for keys: [NodeKey], context: ShardContext) -> [GhostNode] {
        state.withLock { s in
            keys.compactMap { k in
                let v = k.rawValue
                guard v < UInt64(layout.nodeCount) else { return nil }
                let lv = layout.local(Int(v))
                guard lv >= 0 else { return nil }
                var w = ByteWriter(capacity: 16)
                w.i64(s.signal[lv])
                w.i64(s.trail[lv])
                return GhostNode(key: k, owner: id, tick: context.tick, payload: w.bytes)
            }
        }
    }

    /// A colony shard never reads ghost nodes: the runner need not fetch any for it.
    public var readsGhosts: Bool { false }

    public func stateDigest() -> UInt64 {
        state.withLock { s in
            var d: UInt64 = 0
            for (i, v) in layout.owned.enumerated() {
                d &+= StateDigest.record(1, UInt64(v), UInt64(bitPattern: s.signal[i]), UInt64(bitPattern: s.trail[i]))
            }
            for a in s.agents { d &+= StateDigest.record(2, a.id, a.node, a.steps) }
            return d
        }
    }

    // MARK: Snapshots

    private static let magic = Array("COLONY01".utf8)

    /// The shard's nodes' signal and trail and its agents, behind a header naming the colony,
    /// the shard and the placement (a snapshot restores only into the same shard of the same
    /// colony, partitioned the same way).
    public func snapshot() throws -> [UInt8] {
        var bytes: [UInt8] = []
        try snapshot(into: &bytes)
        return bytes
    }

    public func snapshot(into buffer: inout [UInt8]) throws {
        var w = ByteWriter(capacity: 0)
        swap(&w.bytes, &buffer)
        w.bytes.removeAll(keepingCapacity: true)
        state.withLock { s in
            w.bytes.reserveCapacity(128 + s.signal.count * 16 + s.agents.count * 24)
            writeHeader(&w)
            w.u64(UInt64(s.signal.count))
            appendLittleEndian(s.signal, to: &w.bytes)
            appendLittleEndian(s.trail, to: &w.bytes)
            w.u64(UInt64(s.agents.count))
            #if _endian(little)
            // An agent is three UInt64 fields, stored in order without padding.
            s.agents.withUnsafeBytes { w.bytes.append(contentsOf: $0) }
            #else
            for a in s.agents {
                w.u64(a.id)
                w.u64(a.node)
                w.u64(a.steps)
            }
            #endif
        }
        swap(&w.bytes, &buffer)
    }

    public func restore(_ snapshot: [UInt8]) throws {
        var expected = ByteWriter()
        writeHeader(&expected)
        guard snapshot.count >= expected.bytes.count, Array(snapshot[0..<expected.bytes.count]) == expected.bytes else {
            throw ColonyError(shard: id, tick: 0, problem: "the snapshot is not of this shard of this colony and placement")
        }
        let m = layout.owned.count
        var r = ByteReader(snapshot)
        var restored = ColonyState(layout: layout)
        do {
            try r.skipRaw(expected.bytes.count, "header")
            let at = r.offset
            guard try r.u64("node count") == UInt64(m) else {
                throw WireDecodeError(field: "node count", offset: at, problem: "not \(m)")
            }
            let values = try r.raw(m * 16, "signal and trail")
            values.withUnsafeBytes { raw in
                for i in 0..<m {
                    restored.signal[i] = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                    restored.trail[i] = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: (m + i) * 8, as: Int64.self))
                }
            }
            let agentsAt = r.offset
            let agents = try r.u64("agent count")
            guard agents <= UInt64(snapshot.count / 24) else {
                throw WireDecodeError(field: "agent count", offset: agentsAt, problem: "\(agents) is more than the bytes hold")
            }
            restored.agents.removeAll()
            restored.agents.reserveCapacity(Int(agents))
            var previous: UInt64? = nil
            for _ in 0..<agents {
                let a = ColonyAgent(id: try r.u64("agent id"), node: try r.u64("agent node"), steps: try r.u64("agent steps"))
                guard a.node < UInt64(layout.nodeCount), layout.local(Int(a.node)) >= 0,
                      previous.map({ $0 < a.id }) ?? true else {
                    throw WireDecodeError(field: "agent", offset: r.offset - 24, problem: "agent \(a.id) at node \(a.node) does not belong here")
                }
                previous = a.id
                restored.agents.append(a)
            }
            try r.expectEnd("colony snapshot")
        } catch {
            throw ColonyError(shard: id, tick: 0, problem: "corrupt snapshot: \(error)")
        }
        state.withLock { $0 = restored }
    }

    private func writeHeader(_ w: inout ByteWriter) {
        w.bytes.append(contentsOf: ColonyShard.magic)
        let c = configuration
        w.u64(c.seed)
        w.u64(UInt64(c.nodeCount))
        w.u64(UInt64(c.agentCount))
        w.u64(UInt64(c.chordsPerNode))
        w.i64(c.deposit)
        w.i64(c.diffusionPer1024)
        w.i64(c.decayPer1024)
        w.u64(id.value)
        w.placement(layout.placement.strategy)
        w.count(layout.placement.shards.count)
        for s in layout.placement.shards { w.u64(s.value) }
    }
}

/// Totals of a colony shard (or, summed, of a colony).
public struct ColonySummary: Sendable, Equatable {
    public var nodes: Int
    public var agents: Int
    public var totalSignal: Int64
    public var totalTrail: Int64
}

/// A colony shard met data it cannot apply (a node it does not own, a malformed transfer or
/// snapshot).
public struct ColonyError: Error, Sendable, CustomStringConvertible {
    public var shard: ShardID
    public var tick: UInt64
    public var problem: String

    public var description: String { "colony \(shard), tick \(tick): \(problem)" }
}

struct ColonyAgent: Sendable, Equatable {
    var id: UInt64
    var node: UInt64
    var steps: UInt64
}

/// A shard's fixed view of the colony: its nodes; for each, its own neighbours (as indices
/// among the shard's nodes) and its remote ones (as slots of the outgoing buffer); and the halo
/// plan: which slots go to which shard, and where each arriving amount lands.
///
/// Both ends of an exchange derive the plan from the graph and the placement alone: the sender
/// numbers its cross-shard edges to a shard in (its node, neighbour) order, and the receiver
/// walks the sender's nodes in the same order — so amounts travel without node ids.
struct ColonyLayout: Sendable {
    let configuration: ColonyConfiguration
    let graph: ColonyGraph
    let placement: ShardPlacement
    /// This shard's position in `placement.shards`.
    let position: Int
    let nodeCount: Int
    /// The shard's nodes, increasing: local index `i` is node `owned[i]`.
    let owned: [Int32]
    /// Per node: its local index here (≥ 0), or `-(owner position + 1)`.
    private let placeOf: [Int32]
    /// Under a ranges placement the shard's nodes are `rangeLow ..< rangeHigh` and a node's
    /// local index is `v - rangeLow` (no lookup); else the range is empty.
    private let rangeLow: Int
    private let rangeHigh: Int
    /// Neighbour entries of local node `i`: `start[i] ..< split[i]` in `code` are local indices,
    /// `split[i] ..< start[i + 1]` slots of the outgoing buffer.
    let start: [Int32]
    let split: [Int32]
    let code: [Int32]
    /// The outgoing buffer's slots for the shard at position `p`: `outBase[p] ..< outBase[p + 1]`.
    let outBase: [Int]
    /// For the shard at position `p`: the local index each of its amounts lands on, in order.
    let haloIn: [[Int32]]

    init(id: ShardID, partition: ColonyPartition) {
        configuration = partition.configuration
        graph = partition.graph
        placement = partition.placement
        nodeCount = partition.configuration.nodeCount
        let position = partition.placement.shards.firstIndex(of: id) ?? -1
        self.position = position
        let shardCount = max(1, partition.placement.shards.count)
        owned = position >= 0 ? partition.owned[position] : []
        var placeOf = [Int32](repeating: 0, count: nodeCount)
        for v in 0..<nodeCount {
            let p = Int(partition.ownerPosition[v])
            placeOf[v] = p == position ? partition.indexInOwner[v] : Int32(-(p + 1))
        }
        self.placeOf = placeOf
        if case .ranges = placement.strategy, let first = owned.first, let last = owned.last,
           Int(last) - Int(first) + 1 == owned.count {
            rangeLow = Int(first)
            rangeHigh = Int(last) + 1
        } else {
            rangeLow = 0
            rangeHigh = 0
        }
        // Number the outgoing edges per target shard, in (node, neighbour) order.
        var perTarget = [Int](repeating: 0, count: shardCount)
        for v in owned {
            for j in Int(graph.offsets[Int(v)])..<Int(graph.offsets[Int(v) + 1]) {
                let p = Int(partition.ownerPosition[Int(graph.neighbours[j])])
                if p != position { perTarget[p] += 1 }
            }
        }
        var outBase = [0]
        for p in 0..<shardCount { outBase.append(outBase[p] + perTarget[p]) }
        self.outBase = outBase
        var next = Array(outBase.dropLast())
        // Each node's entries: its own neighbours first (local indices), then its remote ones
        // (slots), so the diffusion loops have no data-dependent branch.
        var start: [Int32] = [0]
        var split: [Int32] = []
        var code: [Int32] = []
        start.reserveCapacity(owned.count + 1)
        split.reserveCapacity(owned.count)
        var remote: [Int32] = []
        for v in owned {
            remote.removeAll(keepingCapacity: true)
            for j in Int(graph.offsets[Int(v)])..<Int(graph.offsets[Int(v) + 1]) {
                let u = Int(graph.neighbours[j])
                let p = Int(partition.ownerPosition[u])
                if p == position {
                    code.append(partition.indexInOwner[u])
                } else {
                    remote.append(Int32(next[p]))
                    next[p] += 1
                }
            }
            split.append(Int32(code.count))
            code.append(contentsOf: remote)
            start.append(Int32(code.count))
        }
        self.start = start
        self.split = split
        self.code = code
        haloIn = position >= 0 ? partition.haloIn[position] : []
    }

    /// The local index of node `v`, or -1 when another shard owns it.
    @inline(__always)
    func local(_ v: Int) -> Int {
        if v >= rangeLow && v < rangeHigh { return v - rangeLow }
        let p = Int(placeOf[v])
        return p >= 0 ? p : -1
    }

    /// The local index of node `v` (≥ 0), or `-(owner position + 1)`.
    @inline(__always)
    func place(_ v: Int) -> Int {
        if v >= rangeLow && v < rangeHigh { return v - rangeLow }
        return Int(placeOf[v])
    }
}

/// The mutable state of one colony shard: per own node (by local index) and per agent.
struct ColonyState: Sendable {
    var signal: [Int64]
    var trail: [Int64]
    var inflow: [Int64]
    var pendingTrail: [Int64]
    var agents: [ColonyAgent]
    /// Sense's decision per agent: the node it moves to.
    var plan: [Int32] = []
    /// The agents buffer of the previous tick, reused.
    var spareAgents: [ColonyAgent] = []
    /// What Act sends other shards: one amount per cross-shard edge (the halo plan's slots),
    /// and the agents moving to each shard (by position).
    var outgoing: [Int64]
    var outAgents: [[ColonyAgent]]
    let outBase: [Int]

    init(layout: ColonyLayout) {
        let m = layout.owned.count
        let seed = layout.configuration.seed
        signal = layout.owned.map { v in Int64(ColonyRandom.value(seed, 0x51, UInt64(v)) % 1024) << 10 }
        trail = Array(repeating: 0, count: m)
        inflow = Array(repeating: 0, count: m)
        pendingTrail = Array(repeating: 0, count: m)
        var agents: [ColonyAgent] = []
        for a in 0..<UInt64(layout.configuration.agentCount) {
            let node = ColonyRandom.value(seed, 0xA9, a) % UInt64(layout.nodeCount)
            if layout.local(Int(node)) >= 0 { agents.append(ColonyAgent(id: a, node: node, steps: 0)) }
        }
        self.agents = agents
        let shards = max(1, layout.placement.shards.count)
        outBase = layout.outBase
        outgoing = Array(repeating: 0, count: layout.outBase[shards])
        outAgents = Array(repeating: [], count: shards)
    }

    mutating func clearOutgoing() {
        for p in outAgents.indices where !outAgents[p].isEmpty { outAgents[p].removeAll(keepingCapacity: true) }
    }

    /// What goes to the shard at `position`, encoded (nil when nothing does): inflow count,
    /// amounts (i64 each, in the halo plan's order), agent count, agents (id, node, steps).
    func encodeTransfer(to position: Int) -> [UInt8]? {
        let amounts = outgoing[outBase[position]..<outBase[position + 1]], agents = outAgents[position]
        guard !amounts.isEmpty || !agents.isEmpty else { return nil }
        var w = ByteWriter(capacity: 8 + amounts.count * 8 + agents.count * 24)
        w.count(amounts.count)
        #if _endian(little)
        amounts.withUnsafeBytes { w.bytes.append(contentsOf: $0) }
        #else
        for a in amounts { w.i64(a) }
        #endif
        w.count(agents.count)
        for a in agents {
            w.u64(a.id)
            w.u64(a.node)
            w.u64(a.steps)
        }
        return w.bytes
    }
}

/// Appends the integers' little-endian bytes (one copy on little-endian machines).
private func appendLittleEndian<T: FixedWidthInteger>(_ values: [T], to bytes: inout [UInt8]) {
    #if _endian(little)
    values.withUnsafeBytes { bytes.append(contentsOf: $0) }
    #else
    for v in values { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    #endif
}
