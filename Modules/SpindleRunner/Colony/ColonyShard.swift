import SpindleKernel
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
                        let stayPer1024 = min(900, signal[layout.local(v)] >> 12)
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
            diffuse(signal: &s.signal, inflow: &s.inflow, outNodes: &s.outNodes, outAmounts: &s.outAmounts)
            // Deposits and moves.
            let deposit = configuration.deposit
            var staying = s.spareAgents
            staying.removeAll(keepingCapacity: true)
            staying.reserveCapacity(s.agents.count)
            for (i, var a) in s.agents.enumerated() {
                let v = Int(a.node)
                s.inflow[layout.local(v)] += deposit
                let w = Int(s.plan[i])
                if w != v { a.steps += 1 }
                a.node = UInt64(w)
                let lw = layout.local(w)
                if lw >= 0 {
                    if w != v { s.pendingTrail[lw] += 1 }
                    staying.append(a)
                } else {
                    s.outAgents[layout.ownerPosition(w)].append(a)
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

    /// Each node sends a share of its signal (as Sense saw it) to each neighbour.
    private func diffuse(signal: inout [Int64], inflow: inout [Int64], outNodes: inout [[UInt32]],
                         outAmounts: inout [[Int64]]) {
        let per1024 = configuration.diffusionPer1024
        let count = layout.owned.count
        layout.start.withUnsafeBufferPointer { start in
            layout.code.withUnsafeBufferPointer { code in
                layout.global.withUnsafeBufferPointer { global in
                    signal.withUnsafeMutableBufferPointer { signal in
                        inflow.withUnsafeMutableBufferPointer { inflow in
                            for i in 0..<count {
                                let share = signal[i] * per1024 / 1024
                                guard share > 0 else { continue }
                                let lo = Int(start[i]), hi = Int(start[i + 1])
                                signal[i] -= share * Int64(hi - lo)
                                for j in lo..<hi {
                                    let c = Int(code[j])
                                    if c >= 0 {
                                        inflow[c] += share
                                    } else {
                                        outNodes[-c - 1].append(UInt32(bitPattern: global[j]))
                                        outAmounts[-c - 1].append(share)
                                    }
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

    /// Applies another shard's transfer: signal flowing into this shard's nodes, agents moving in.
    private func applyTransfer(_ payload: [UInt8], from: ShardID, tick: UInt64, into s: inout ColonyState) throws {
        func corrupt(_ what: String) -> ColonyError {
            ColonyError(shard: id, tick: tick, problem: "transfer from \(from): \(what)")
        }
        try payload.withUnsafeBytes { raw in
            var at = 0
            func count(_ size: Int) throws -> Int {
                guard raw.count - at >= 4 else { throw corrupt("truncated at byte \(at)") }
                let n = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                at += 4
                guard n <= (raw.count - at) / size else { throw corrupt("count \(n) at byte \(at - 4) exceeds the bytes left") }
                return n
            }
            let inflows = try count(12)
            let nodes = at
            let amounts = at + inflows * 4
            at += inflows * 12
            for k in 0..<inflows {
                let node = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: nodes + k * 4, as: UInt32.self)))
                let amount = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: amounts + k * 8, as: Int64.self))
                let ln = node < layout.nodeCount ? layout.local(node) : -1
                guard ln >= 0 else { throw corrupt("inflow for node \(node), not owned here") }
                s.inflow[ln] += amount
            }
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
                var w = WireWriter(capacity: 16)
                w.i64(s.signal[lv])
                w.i64(s.trail[lv])
                return GhostNode(key: k, owner: id, tick: context.tick, payload: w.bytes)
            }
        }
    }

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
        state.withLock { s in
            var w = WireWriter(capacity: 128 + s.signal.count * 16 + s.agents.count * 24)
            writeHeader(&w)
            w.u64(UInt64(s.signal.count))
            appendLittleEndian(s.signal, to: &w.bytes)
            appendLittleEndian(s.trail, to: &w.bytes)
            w.u64(UInt64(s.agents.count))
            for a in s.agents {
                w.u64(a.id)
                w.u64(a.node)
                w.u64(a.steps)
            }
            return w.bytes
        }
    }

    public func restore(_ snapshot: [UInt8]) throws {
        var expected = WireWriter()
        writeHeader(&expected)
        guard snapshot.count >= expected.bytes.count, Array(snapshot[0..<expected.bytes.count]) == expected.bytes else {
            throw ColonyError(shard: id, tick: 0, problem: "the snapshot is not of this shard of this colony and placement")
        }
        let m = layout.owned.count
        var r = WireReader(snapshot)
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

    private func writeHeader(_ w: inout WireWriter) {
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

/// A shard's fixed view of the colony: its nodes, and for each its neighbours, coded as an
/// index among the shard's own nodes (≥ 0) or as `-(position + 1)` of the owning shard.
struct ColonyLayout: Sendable {
    let configuration: ColonyConfiguration
    let graph: ColonyGraph
    let placement: ShardPlacement
    /// This shard's position in `placement.shards`.
    let position: Int
    let nodeCount: Int
    /// The shard's nodes, increasing: local index `i` is node `owned[i]`.
    let owned: [Int32]
    private let ownerPositions: [Int32]
    private let indexInOwner: [Int32]
    /// Neighbour entries of local node `i`: `start[i] ..< start[i + 1]` in `code` and `global`.
    let start: [Int32]
    let code: [Int32]
    let global: [Int32]

    init(id: ShardID, partition: ColonyPartition) {
        configuration = partition.configuration
        graph = partition.graph
        placement = partition.placement
        nodeCount = partition.configuration.nodeCount
        let position = partition.placement.shards.firstIndex(of: id) ?? -1
        self.position = position
        ownerPositions = partition.ownerPosition
        indexInOwner = partition.indexInOwner
        owned = position >= 0 ? partition.owned[position] : []
        var start: [Int32] = [0]
        var code: [Int32] = []
        var global: [Int32] = []
        start.reserveCapacity(owned.count + 1)
        for v in owned {
            for j in Int(graph.offsets[Int(v)])..<Int(graph.offsets[Int(v) + 1]) {
                let u = Int(graph.neighbours[j])
                let p = Int(partition.ownerPosition[u])
                code.append(p == position ? partition.indexInOwner[u] : Int32(-(p + 1)))
                global.append(Int32(u))
            }
            start.append(Int32(code.count))
        }
        self.start = start
        self.code = code
        self.global = global
    }

    /// The local index of node `v`, or -1 when another shard owns it.
    @inline(__always)
    func local(_ v: Int) -> Int {
        Int(ownerPositions[v]) == position ? Int(indexInOwner[v]) : -1
    }

    @inline(__always)
    func ownerPosition(_ v: Int) -> Int { Int(ownerPositions[v]) }
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
    /// What Act sends each shard (by position): inflowing signal per node, arriving agents.
    var outNodes: [[UInt32]]
    var outAmounts: [[Int64]]
    var outAgents: [[ColonyAgent]]

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
        outNodes = Array(repeating: [], count: shards)
        outAmounts = Array(repeating: [], count: shards)
        outAgents = Array(repeating: [], count: shards)
    }

    mutating func clearOutgoing() {
        for p in outNodes.indices {
            outNodes[p].removeAll(keepingCapacity: true)
            outAmounts[p].removeAll(keepingCapacity: true)
            outAgents[p].removeAll(keepingCapacity: true)
        }
    }

    /// What goes to the shard at `position`, encoded (nil when nothing does): inflow count,
    /// nodes (u32 each), amounts (i64 each), agent count, agents (id, node, steps).
    func encodeTransfer(to position: Int) -> [UInt8]? {
        let nodes = outNodes[position], amounts = outAmounts[position], agents = outAgents[position]
        guard !nodes.isEmpty || !agents.isEmpty else { return nil }
        var w = WireWriter(capacity: 8 + nodes.count * 12 + agents.count * 24)
        w.count(nodes.count)
        appendLittleEndian(nodes, to: &w.bytes)
        appendLittleEndian(amounts, to: &w.bytes)
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
