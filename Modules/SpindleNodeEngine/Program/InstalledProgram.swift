/// An op as installed: its name, callee, parameters and port names (what a component can read
/// through `context.currentOp`).
public struct InstalledOp: Sendable {
    public let name: String
    public let call: OpCall
    public let params: [String: Value]
    public let inputPorts: [String]
    public let outputPorts: [String]
}

/// Where an installed op dispatches.
enum OpTarget {
    case component(index: Int, op: Int)
    case syscall(SyscallConfig)
}

/// One op compiled to dense indices: its input slots are `slotBase ..< slotBase + inputCount`
/// in every execution, its any-of groups `groupBase ..< groupBase + groupCount`.
struct CompiledOp {
    let info: InstalledOp
    let target: OpTarget
    let slotBase: Int
    let inputCount: Int
    let requiredCount: Int16
    let groupBase: Int
    let groupCount: Int16
    /// Site index per output port (-1 when the port is not connected).
    let outputSites: [Int]
    /// Site that receives the failure text (-1 when none).
    let errorSite: Int
    let isAsync: Bool
    let timeout: Duration?
    /// Declared type of each input port (what remote values are checked against).
    let inputTypes: [ValueType]
}

/// A site compiled: who consumes it.
struct CompiledSite {
    let name: String
    let type: ValueType
    /// Input slots filled when the site is written (empty for a sink).
    let consumers: [Int]
}

/// A program validated against the installed components and compiled to dense indices, so
/// firing an op touches arrays only.
final class InstalledProgram {
    let program: Program
    let sites: [CompiledSite]
    let siteIndex: [String: Int]
    let ops: [CompiledOp]
    let opIndex: [String: Int]
    /// Per input slot: its op, and its role (-1 required, -2 optional, ≥ 0 global group index).
    let slotOp: [Int]
    let slotRole: [Int]
    let slotPortName: [String]
    let totalSlots: Int
    let totalGroups: Int
    /// Ops without inputs: they fire when an execution starts.
    let sourceOps: [Int]
    /// Event kind → sites to start executions at.
    let subscriptions: [NodeEventKind: [Int]]

    // Hot-path copies of the per-op and per-site data as flat arrays of plain integers, so
    // firing an op copies no strings or nested arrays.
    let opSlotBase: [Int]
    let opInputCount: [Int]
    let opRequired: [Int16]
    let opGroupBase: [Int]
    let opGroupCount: [Int16]
    let opIsAsync: [Bool]
    /// Component index of the op (-1 for syscalls) and the op's index in the component.
    let opComponent: [Int]
    let opComponentOp: [Int]
    let opOutputBase: [Int]
    let opOutputCount: [Int]
    let outputSiteFlat: [Int]
    let siteConsumerBase: [Int]
    let siteConsumerCount: [Int]
    let consumerFlat: [Int]
    /// The components the program calls, by index (a snapshot taken at install).
    let components: [any Component]
    /// Per op: its name and input port names, shared by the `OpInputs` it fires with.
    let opPorts: [PortNames]

    init(_ program: Program, siblings: SiblingView) throws(ProgramError) {
        self.program = program
        var siteIndex: [String: Int] = [:]
        for (i, s) in program.sites.enumerated() {
            guard siteIndex[s.name] == nil else { throw .duplicateSite(s.name) }
            siteIndex[s.name] = i
        }
        var opIndex: [String: Int] = [:]
        for (i, o) in program.ops.enumerated() {
            guard opIndex[o.name] == nil else { throw .duplicateOp(o.name) }
            opIndex[o.name] = i
        }

        var consumers = Array(repeating: [Int](), count: program.sites.count)
        var slotOp: [Int] = [], slotRole: [Int] = [], slotSite: [Int] = [], slotPortName: [String] = []
        var ops: [CompiledOp] = []
        var groupTotal = 0
        var sourceOps: [Int] = []

        for (opNumber, spec) in program.ops.enumerated() {
            // Resolve the callee and its ports.
            let target: OpTarget
            let inputs: [PortSpec], outputs: [PortSpec], isAsync: Bool
            switch spec.call {
            case .syscall(let name):
                guard let kind = SyscallKind(rawValue: name) else { throw .unknownOp(op: spec.name, call: spec.call.description) }
                let config = try SyscallConfig.make(kind, spec: spec)
                (inputs, outputs) = SyscallConfig.ports(kind, spec: spec)
                isAsync = config.isAsync
                target = .syscall(config)
            case .component(let slot, let opName):
                guard let ci = siblings.slots[slot] else { throw .unboundSlot(op: spec.name, slot: slot) }
                let sigs = siblings.components[ci].signatures
                guard let oi = sigs.firstIndex(where: { $0.name == opName }) else {
                    throw .unknownOp(op: spec.name, call: spec.call.description)
                }
                inputs = sigs[oi].inputs
                outputs = sigs[oi].outputs
                isAsync = sigs[oi].isAsync
                target = .component(index: ci, op: oi)
            }

            // Every bound port must exist; `error` is an extra output every op has.
            for port in spec.inputs.keys.sorted() where !inputs.contains(where: { $0.name == port }) {
                throw .unknownPort(op: spec.name, port: port)
            }
            for port in spec.outputs.keys.sorted() where port != "error" && !outputs.contains(where: { $0.name == port }) {
                throw .unknownPort(op: spec.name, port: port)
            }

            func site(_ port: PortSpec, _ name: String) throws(ProgramError) -> Int {
                guard let s = siteIndex[name] else { throw .unknownSite(op: spec.name, port: port.name, site: name) }
                let st = program.sites[s].type
                guard port.type.isCompatible(with: st) else {
                    throw .typeMismatch(op: spec.name, port: port.name, site: name, portType: port.type, siteType: st)
                }
                return s
            }

            // Input slots and any-of groups.
            let slotBase = slotOp.count
            var groups: [String: Int] = [:]
            var required: Int16 = 0
            for port in inputs {
                guard let siteName = spec.inputs[port.name] else {
                    if port.group == nil && !port.optional { throw .missingInput(op: spec.name, port: port.name) }
                    // Unbound optional or any-of port: a slot that is never filled.
                    slotOp.append(opNumber); slotRole.append(-2); slotSite.append(-1); slotPortName.append(port.name)
                    continue
                }
                let s = try site(port, siteName)
                let slot = slotOp.count
                consumers[s].append(slot)
                let role: Int
                if let g = port.group {
                    if groups[g] == nil { groups[g] = groupTotal + groups.count }
                    role = groups[g]!
                } else if port.optional {
                    role = -2
                } else {
                    role = -1
                    required += 1
                }
                slotOp.append(opNumber); slotRole.append(role); slotSite.append(s); slotPortName.append(port.name)
            }
            // An any-of group with no bound port could never be satisfied.
            for port in inputs where port.group != nil && groups[port.group!] == nil {
                throw .missingInput(op: spec.name, port: port.name)
            }
            let groupBase = groupTotal
            groupTotal += groups.count

            var outputSites: [Int] = []
            for port in outputs {
                outputSites.append(try spec.outputs[port.name].map { n throws(ProgramError) in try site(port, n) } ?? -1)
            }
            let errorSite = try spec.outputs["error"].map { n throws(ProgramError) in try site(PortSpec("error", .string), n) } ?? -1

            if spec.inputs.isEmpty { sourceOps.append(opNumber) }
            // Any async op may name its deadline (WireCall uses it as its wire deadline; Sleep
            // and After complete when their timer matures).
            let timeout: Duration? = spec.params["timeoutMs"] == nil ? nil : try Params(spec: spec).duration("timeoutMs")

            ops.append(CompiledOp(
                info: InstalledOp(name: spec.name, call: spec.call, params: spec.params,
                                  inputPorts: inputs.map(\.name), outputPorts: outputs.map(\.name)),
                target: target, slotBase: slotBase, inputCount: inputs.count, requiredCount: required,
                groupBase: groupBase, groupCount: Int16(groups.count), outputSites: outputSites,
                errorSite: errorSite, isAsync: isAsync, timeout: timeout, inputTypes: inputs.map(\.type)))
        }

        var subscriptions: [NodeEventKind: [Int]] = [:]
        for sub in program.subscriptions {
            guard let s = siteIndex[sub.site] else { throw .unknownSubscriptionSite(sub.site) }
            subscriptions[sub.event, default: []].append(s)
        }

        self.sites = program.sites.enumerated().map { CompiledSite(name: $1.name, type: $1.type, consumers: consumers[$0]) }
        self.siteIndex = siteIndex
        self.ops = ops
        self.opIndex = opIndex
        self.slotOp = slotOp
        self.slotRole = slotRole
        self.slotPortName = slotPortName
        self.totalSlots = slotOp.count
        self.totalGroups = groupTotal
        self.sourceOps = sourceOps
        self.subscriptions = subscriptions
        opSlotBase = ops.map(\.slotBase)
        opInputCount = ops.map(\.inputCount)
        opRequired = ops.map(\.requiredCount)
        opGroupBase = ops.map(\.groupBase)
        opGroupCount = ops.map(\.groupCount)
        opIsAsync = ops.map(\.isAsync)
        opComponent = ops.map { if case .component(let c, _) = $0.target { return c } else { return -1 } }
        opComponentOp = ops.map { if case .component(_, let o) = $0.target { return o } else { return -1 } }
        var outputBase: [Int] = [], outputFlat: [Int] = []
        for op in ops {
            outputBase.append(outputFlat.count)
            outputFlat.append(contentsOf: op.outputSites)
        }
        opOutputBase = outputBase
        opOutputCount = ops.map(\.outputSites.count)
        outputSiteFlat = outputFlat
        var consumerBase: [Int] = [], flat: [Int] = []
        for c in consumers {
            consumerBase.append(flat.count)
            flat.append(contentsOf: c)
        }
        siteConsumerBase = consumerBase
        siteConsumerCount = consumers.map(\.count)
        consumerFlat = flat
        components = siblings.components
        opPorts = ops.map { PortNames(op: $0.info.name, names: $0.info.inputPorts) }

        try Self.checkCycles(ops: ops, slotSite: slotSite, slotRole: slotRole, sites: program.sites.count,
                             subscribed: Set(subscriptions.values.joined()))
    }

    /// Rejects strongly connected groups of ops that nothing outside the group can start.
    ///
    /// An op in a cycle can start from outside when each of its required inputs (and one input
    /// of each any-of group, or any input when all are optional) is fed by a site that some op
    /// outside the cycle writes, or that no op writes (an entry the host or a peer fills).
    private static func checkCycles(ops: [CompiledOp], slotSite: [Int], slotRole: [Int], sites: Int,
                                    subscribed: Set<Int>) throws(ProgramError) {
        var writers = Array(repeating: [Int](), count: sites)
        for (i, op) in ops.enumerated() { for s in op.outputSites where s >= 0 { writers[s].append(i) } }
        var edges = Array(repeating: [Int](), count: ops.count)
        for (i, op) in ops.enumerated() {
            for slot in op.slotBase..<(op.slotBase + op.inputCount) where slotSite[slot] >= 0 {
                for w in writers[slotSite[slot]] { edges[w].append(i) }
            }
        }
        for component in stronglyConnected(edges) {
            let members = Set(component)
            let isCycle = component.count > 1 || edges[component[0]].contains(component[0])
            guard isCycle else { continue }
            func fedFromOutside(_ slot: Int) -> Bool {
                let s = slotSite[slot]
                guard s >= 0 else { return false }
                return subscribed.contains(s) || writers[s].isEmpty || writers[s].contains { !members.contains($0) }
            }
            let startable = component.contains { i in
                let op = ops[i]
                let slots = Array(op.slotBase..<(op.slotBase + op.inputCount))
                if slots.isEmpty { return true }
                if op.requiredCount == 0 && op.groupCount == 0 { return slots.contains(where: fedFromOutside) }
                let requiredOK = slots.filter { slotRole[$0] == -1 }.allSatisfy(fedFromOutside)
                let groups = Set(slots.compactMap { slotRole[$0] >= 0 ? slotRole[$0] : nil })
                let groupsOK = groups.allSatisfy { g in slots.contains { slotRole[$0] == g && fedFromOutside($0) } }
                return requiredOK && groupsOK
            }
            if !startable { throw .cycleWithoutTrigger(ops: component.sorted().map { ops[$0].info.name }) }
        }
    }

    /// Tarjan's strongly connected components (iterative, so deep graphs cannot overflow).
    private static func stronglyConnected(_ edges: [[Int]]) -> [[Int]] {
        let n = edges.count
        var index = Array(repeating: -1, count: n), low = Array(repeating: 0, count: n)
        var onStack = Array(repeating: false, count: n)
        var stack: [Int] = [], result: [[Int]] = []
        var counter = 0
        for root in 0..<n where index[root] < 0 {
            var work: [(node: Int, edge: Int)] = [(root, 0)]
            index[root] = counter; low[root] = counter; counter += 1
            stack.append(root); onStack[root] = true
            while let (v, e) = work.last {
                if e < edges[v].count {
                    work[work.count - 1].edge += 1
                    let w = edges[v][e]
                    if index[w] < 0 {
                        index[w] = counter; low[w] = counter; counter += 1
                        stack.append(w); onStack[w] = true
                        work.append((w, 0))
                    } else if onStack[w] {
                        low[v] = min(low[v], index[w])
                    }
                } else {
                    work.removeLast()
                    if let parent = work.last { low[parent.node] = min(low[parent.node], low[v]) }
                    if low[v] == index[v] {
                        var comp: [Int] = []
                        while let w = stack.popLast() {
                            onStack[w] = false
                            comp.append(w)
                            if w == v { break }
                        }
                        result.append(comp)
                    }
                }
            }
        }
        return result
    }
}
