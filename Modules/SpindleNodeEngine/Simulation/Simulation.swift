import SpindleKernel
import SpindleSupport
import Synchronization

/// Runs many nodes on one `ManualClock` over an `InProcessTransport` with fault injection,
/// reproducibly: the same seed and the same inputs give the same event trace.
///
/// Each step advances the clock, releases delayed envelopes, hands every node the envelopes
/// that arrived (sorted by sender and sequence, so arrival order never depends on thread or
/// hash order), polls every node in name order and sends what they emitted. Every bus event,
/// app event, finished execution and sent envelope is appended to `trace`.
///
/// ```swift
/// let sim = try await Simulation(names: ["a", "b"], seed: 7) { name, node in
///     try node.install(Echo(), at: "echo"); try node.install(program)
/// }
/// sim.faults.setPlan(FaultPlan(dropProbability: 0.1))
/// try sim.node("a").start(site: "in", value: .int(1))
/// sim.run(for: .seconds(1))
/// ```
public final class Simulation {
    public struct Configuration: Sendable {
        /// Clock advance per step.
        public var step: Duration = .milliseconds(1)
        /// Configuration of every node (its seed is mixed with the node's index).
        public var node = NodeConfiguration()
        public init() {}
    }

    /// One simulated node.
    final class Member {
        let name: String
        let node: Node
        var links: [NodeID: any TransportConnection] = [:]
        let arrived = Arrivals()

        init(name: String, node: Node) {
            self.name = name
            self.node = node
        }
    }

    /// Envelopes delivered to a node by the transport, waiting for the next step.
    final class Arrivals: Sendable {
        let envelopes = Mutex<[Envelope]>([])
    }

    public let clock: ManualClock
    public let transport: InProcessTransport
    public let configuration: Configuration
    private var members: [Member] = []
    private var listeners: [any TransportListener] = []
    /// Everything that happened, one line per event, in order.
    public private(set) var trace: [String] = []
    /// Envelopes whose destination had no link.
    public private(set) var unroutable = 0

    /// Creates the nodes (ids derived from `seed`), lets `setup` install components and programs
    /// on each, and connects every pair.
    public init(names: [String], seed: UInt64, configuration: Configuration = .init(),
                setup: (String, Node) throws -> Void) async throws {
        self.configuration = configuration
        clock = ManualClock()
        transport = InProcessTransport(configuration: .init(delivery: .inline, delayRelease: .manual,
                                                            clock: clock, seed: seed))
        var rng = SplitMix64(seed: seed)
        for (i, name) in names.enumerated() {
            var c = configuration.node
            c.seed = seed &+ UInt64(i) &* 0x9E37_79B9
            let node = Node(id: NodeID(raw: RawID128(high: rng.next(), low: rng.next())), configuration: c, clock: clock)
            try setup(name, node)
            members.append(Member(name: name, node: node))
        }
        for m in members {
            for other in members where other !== m {
                m.node.addPeer(other.node.id, name: other.name, addresses: [.inproc(name: other.name)])
            }
            let inbox = m.arrived
            let listener = try await transport.listen(on: .inproc(name: m.name)) { conn in
                conn.start(ConnectionHandler(
                    onEnvelope: { env in inbox.envelopes.withLock { $0.append(env) } },
                    onClose: { _ in }))
            }
            listeners.append(listener)
        }
        for m in members {
            for other in members where other !== m {
                let conn = try await transport.connect(to: .inproc(name: other.name), from: m.name)
                conn.start(ConnectionHandler(onEnvelope: { _ in }, onClose: { _ in }))
                m.links[other.node.id] = conn
            }
        }
    }

    /// The fault controls (endpoint names are node names).
    public var faults: FaultInjector { transport.faults }

    /// The node named `name`.
    public func node(_ name: String) -> Node {
        members.first { $0.name == name }!.node
    }

    /// Node names in order.
    public var names: [String] { members.map(\.name) }

    /// Advances the clock by one step and runs every node once.
    public func step() {
        clock.advance(by: configuration.step)
        let now = clock.now()
        transport.faults.releaseDue()
        for m in members {
            var arrived = m.arrived.envelopes.withLock { a -> [Envelope] in
                defer { a.removeAll() }
                return a
            }
            arrived.sort { ($0.source?.raw ?? RawID128(high: 0, low: 0), $0.sequence) < ($1.source?.raw ?? RawID128(high: 0, low: 0), $1.sequence) }
            for env in arrived { m.node.deliver(env) }
            var outcome = m.node.poll(now: now)
            record(m, now, &outcome)
            while outcome.status == .budgetExhausted {
                outcome = m.node.poll(now: now)
                record(m, now, &outcome)
            }
        }
    }

    /// Runs steps until `duration` of simulated time has passed, calling `beforeStep` first in
    /// each (to start executions, inject faults…).
    public func run(for duration: Duration, beforeStep: (MonotonicInstant) throws -> Void) rethrows {
        let end = clock.now() + duration
        while clock.now() < end {
            try beforeStep(clock.now())
            step()
        }
    }

    /// Runs steps until `duration` of simulated time has passed.
    public func run(for duration: Duration) {
        run(for: duration, beforeStep: { _ in })
    }

    private func record(_ m: Member, _ now: MonotonicInstant, _ outcome: inout PollOutcome) {
        let t = "t=\(now.nanoseconds / 1_000_000)ms \(m.name)"
        for r in outcome.events { trace.append("\(t) bus \(describe(r.event))") }
        for a in outcome.appEvents { trace.append("\(t) app \(a.name)=\(a.value) \(a.execution)") }
        for f in outcome.finished {
            let results = f.results.keys.sorted().map { "\($0)=\(f.results[$0]!)" }.joined(separator: ",")
            trace.append("\(t) done \(f.id) [\(results)] failures=\(f.failures)")
        }
        for env in outcome.outbound {
            let to = env.destination.flatMap { d in members.first { $0.node.id == d }?.name } ?? "?"
            trace.append("\(t) send kind=\(env.kind) to=\(to) corr=\(env.correlation) seq=\(env.sequence)")
            guard let d = env.destination, let link = m.links[d] else {
                unroutable += 1
                continue
            }
            do { try link.send(env) } catch { trace.append("\(t) sendFailed \(error)") }
        }
    }

    /// Bus events with node ids replaced by node names, so traces read well.
    private func describe(_ event: NodeEvent) -> String {
        var text = event.description
        for m in members { text = text.replacingOccurrences(of: m.node.id.description, with: m.name) }
        return text
    }

    /// Closes listeners and connections and shuts the transport down.
    public func shutdown() async {
        for l in listeners { l.close() }
        for m in members { for c in m.links.values { c.close() } }
        await transport.shutdown()
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let r = rest.firstRange(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        out += rest
        return out
    }
}
