import SpindleKernel
import Synchronization

/// One shard of the colony: agents on a graph depositing signal that diffuses across edges and
/// decays; agents moving between shards leave trail edges.
///
/// Everything is integer arithmetic, every cross-node effect (diffusion, deposits, trails,
/// moving agents) is applied at delivery through order-independent sums, and every random
/// choice comes from (seed, agent, tick): the final state from a seed is the same for any
/// number of shards, in-process or remote. `stateDigest()` summarises it.
///
/// Per tick:
/// - Sense: each agent decides to stay or to move to a neighbour (from its node's signal and
///   its random stream).
/// - Act: each node sends a share of its signal to each neighbour; each agent deposits on its
///   node and moves; what crosses to another shard goes as a message, and each agent crossing
///   emits a cross-shard trail edge.
/// - Decay: inflows, deposits, trails and arriving agents are applied; signal and trails decay.
public final class ColonyShard: Shard {
    public let id: ShardID
    public let configuration: ColonyConfiguration
    private let graph: ColonyGraph
    private let state: Mutex<ColonyState>

    /// A shard owning the nodes `placement` puts on `id`, with the agents that start on them.
    public init(id: ShardID, configuration: ColonyConfiguration, placement: ShardPlacement) {
        self.id = id
        self.configuration = configuration
        let graph = ColonyGraph(configuration)
        self.graph = graph
        state = Mutex(ColonyState(id: id, configuration: configuration, placement: placement))
    }

    /// Shards `1…count` of a colony, registered with `coordinator` (whose placement then decides
    /// which shard owns which node).
    public static func makeShards(count: Int, configuration: ColonyConfiguration,
                                  coordinator: Coordinator) throws(RunnerError) -> [ColonyShard] {
        let ids = (1...max(1, count)).map { ShardID(UInt64($0)) }
        let registered = Set(coordinator.membership.shards)
        for id in ids where !registered.contains(id) { try coordinator.register(id) }
        let placement = coordinator.placement
        return ids.map { ColonyShard(id: $0, configuration: configuration, placement: placement) }
    }

    /// A summary of this shard's part of the colony.
    public var summary: ColonySummary {
        state.withLock { s in
            ColonySummary(nodes: s.ownedNodes.count, agents: s.agents.count,
                          totalSignal: s.ownedNodes.reduce(0) { $0 &+ s.signal[$1] },
                          totalTrail: s.ownedNodes.reduce(0) { $0 &+ s.trail[$1] })
        }
    }

    public func sense(_ context: ShardContext) throws -> Int {
        state.withLock { s in
            s.plan.removeAll(keepingCapacity: true)
            for a in s.agents {
                let v = Int(a.node)
                let r = ColonyRandom.value(configuration.seed, a.id, context.tick)
                // The stronger the node's signal, the likelier the agent stays to feed it.
                let stayPer1024 = min(900, s.signal[v] >> 12)
                if Int64(r & 1023) < stayPer1024 {
                    s.plan.append(v)
                } else {
                    let options = graph.neighbours[v]
                    s.plan.append(options[Int((r >> 10) % UInt64(options.count))])
                }
            }
            return s.agents.count
        }
    }

    public func act(_ context: ShardContext, output: inout ActOutput) throws -> Int {
        try state.withLock { (s: inout ColonyState) throws -> Int in
            guard s.plan.count == s.agents.count else {
                throw ColonyError(shard: id, tick: context.tick,
                                  problem: "act without a matching sense (\(s.plan.count) plans for \(s.agents.count) agents)")
            }
            guard context.placement == s.placement else {
                throw ColonyError(shard: id, tick: context.tick,
                                  problem: "the runner's placement (\(context.placement.shards)) is not the one the colony was partitioned with (\(s.placement.shards)); colony shards do not rebalance")
            }
            // One transfer per other shard, indexed by its position in the placement.
            var outgoing = [ColonyTransfer](repeating: ColonyTransfer(), count: s.placement.shards.count)
            // Diffusion, from the signal as Sense saw it.
            for v in s.ownedNodes {
                let share = s.signal[v] * configuration.diffusionPer1024 / 1024
                guard share > 0 else { continue }
                let ns = graph.neighbours[v]
                s.signal[v] -= share * Int64(ns.count)
                for u in ns {
                    if s.owned[u] {
                        s.inflow[u] += share
                    } else {
                        outgoing[s.ownerIndex[u]].inflows.append((UInt64(u), share))
                    }
                }
            }
            // Deposits and moves.
            var staying: [ColonyAgent] = []
            staying.reserveCapacity(s.agents.count)
            for (i, var a) in s.agents.enumerated() {
                let v = Int(a.node)
                s.inflow[v] += configuration.deposit
                let w = s.plan[i]
                if w != v { a.steps += 1 }
                a.node = UInt64(w)
                if s.owned[w] {
                    if w != v { s.pendingTrail[w] += 1 }
                    staying.append(a)
                } else {
                    outgoing[s.ownerIndex[w]].agents.append(a)
                    output.emitEdge(from: NodeKey(UInt64(v)), to: NodeKey(UInt64(w)), weight: 1)
                }
            }
            s.agents = staying
            s.plan.removeAll(keepingCapacity: true)
            for (i, transfer) in outgoing.enumerated() where !transfer.isEmpty {
                output.send(transfer.encode(), to: s.placement.shards[i])
            }
            return s.ownedNodes.count
        }
    }

    public func deliver(_ delivery: ShardDelivery, context: ShardContext) throws {
        try state.withLock { (s: inout ColonyState) throws in
            for e in delivery.edges {
                let w = Int(e.target.rawValue)
                guard w < s.owned.count, s.owned[w] else {
                    throw ColonyError(shard: id, tick: context.tick, problem: "trail edge for \(e.target), not owned here")
                }
                s.pendingTrail[w] += e.weight
            }
            for m in delivery.messages {
                let t = try ColonyTransfer.decode(m.payload, from: m.from)
                for (node, amount) in t.inflows {
                    guard node < UInt64(s.owned.count), s.owned[Int(node)] else {
                        throw ColonyError(shard: id, tick: context.tick, problem: "inflow from \(m.from) for node \(node), not owned here")
                    }
                    s.inflow[Int(node)] += amount
                }
                for a in t.agents {
                    guard a.node < UInt64(s.owned.count), s.owned[Int(a.node)] else {
                        throw ColonyError(shard: id, tick: context.tick, problem: "agent \(a.id) from \(m.from) arrives at node \(a.node), not owned here")
                    }
                    s.agents.append(a)
                }
            }
            s.agents.sort { $0.id < $1.id }
        }
    }

    public func decay(_ context: ShardContext) throws -> Int {
        state.withLock { s in
            for v in s.ownedNodes {
                s.signal[v] += s.inflow[v]
                s.inflow[v] = 0
                s.trail[v] += s.pendingTrail[v] << 16
                s.pendingTrail[v] = 0
                s.signal[v] -= s.signal[v] * configuration.decayPer1024 / 1024
                s.trail[v] -= s.trail[v] * configuration.decayPer1024 / 1024
            }
            return s.ownedNodes.count
        }
    }

    /// Ghost payload: the node's signal and trail (16 little-endian bytes).
    public func ghostNodes(for keys: [NodeKey], context: ShardContext) -> [GhostNode] {
        state.withLock { s in
            keys.compactMap { k in
                let v = Int(k.rawValue)
                guard v < s.owned.count, s.owned[v] else { return nil }
                var w = WireWriter(capacity: 16)
                w.i64(s.signal[v])
                w.i64(s.trail[v])
                return GhostNode(key: k, owner: id, tick: context.tick, payload: w.bytes)
            }
        }
    }

    public func stateDigest() -> UInt64 {
        state.withLock { s in
            var d: UInt64 = 0
            for v in s.ownedNodes {
                d &+= StateDigest.record(1, UInt64(v), UInt64(bitPattern: s.signal[v]), UInt64(bitPattern: s.trail[v]))
            }
            for a in s.agents { d &+= StateDigest.record(2, a.id, a.node, a.steps) }
            return d
        }
    }
}

/// Totals of a colony shard (or, summed, of a colony).
public struct ColonySummary: Sendable, Equatable {
    public var nodes: Int
    public var agents: Int
    public var totalSignal: Int64
    public var totalTrail: Int64
}

/// A colony shard met data it cannot apply (a node it does not own, a malformed transfer).
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

/// The mutable state of one colony shard. Arrays are indexed by node for speed; only the owned
/// entries are meaningful.
struct ColonyState: Sendable {
    let placement: ShardPlacement
    /// The owning shard of every node, as a position in `placement.shards`.
    let ownerIndex: [Int]
    var owned: [Bool]
    var ownedNodes: [Int]
    var signal: [Int64]
    var trail: [Int64]
    var inflow: [Int64]
    var pendingTrail: [Int64]
    var agents: [ColonyAgent]
    var plan: [Int] = []

    init(id: ShardID, configuration c: ColonyConfiguration, placement: ShardPlacement) {
        let n = c.nodeCount
        self.placement = placement
        let owners = (0..<n).map { placement.owner(of: NodeKey(UInt64($0))) ?? id }
        ownerIndex = owners.map { o in placement.shards.firstIndex(of: o) ?? 0 }
        let owned = owners.map { $0 == id }
        self.owned = owned
        ownedNodes = (0..<n).filter { owned[$0] }
        signal = (0..<n).map { v in Int64(ColonyRandom.value(c.seed, 0x51, UInt64(v)) % 1024) << 10 }
        trail = Array(repeating: 0, count: n)
        inflow = Array(repeating: 0, count: n)
        pendingTrail = Array(repeating: 0, count: n)
        var agents: [ColonyAgent] = []
        for a in 0..<UInt64(c.agentCount) {
            let node = ColonyRandom.value(c.seed, 0xA9, a) % UInt64(n)
            if owned[Int(node)] { agents.append(ColonyAgent(id: a, node: node, steps: 0)) }
        }
        self.agents = agents
    }
}

/// What one colony shard sends another in Act: signal flowing into its nodes, agents moving in.
struct ColonyTransfer: Sendable {
    var inflows: [(UInt64, Int64)] = []
    var agents: [ColonyAgent] = []

    var isEmpty: Bool { inflows.isEmpty && agents.isEmpty }

    func encode() -> [UInt8] {
        var w = WireWriter(capacity: 8 + inflows.count * 16 + agents.count * 24)
        w.count(inflows.count)
        for (n, a) in inflows {
            w.u64(n)
            w.i64(a)
        }
        w.count(agents.count)
        for a in agents {
            w.u64(a.id)
            w.u64(a.node)
            w.u64(a.steps)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8], from: ShardID) throws -> ColonyTransfer {
        var r = WireReader(bytes)
        var t = ColonyTransfer()
        for _ in 0..<(try r.count("inflow count", minimumSize: 16)) {
            t.inflows.append((try r.u64("inflow node"), try r.i64("inflow amount")))
        }
        for _ in 0..<(try r.count("agent count", minimumSize: 24)) {
            t.agents.append(ColonyAgent(id: try r.u64("agent id"), node: try r.u64("agent node"),
                                        steps: try r.u64("agent steps")))
        }
        try r.expectEnd("colony transfer from \(from)")
        return t
    }
}
