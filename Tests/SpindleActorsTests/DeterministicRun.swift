import Distributed
import Logging
@_spi(Testing) import SpindleActors
import SpindleKernel
import SpindleSupport
import Synchronization

/// Records which calls each simulated server ran, to check that none ran twice.
final class ExecutionLog: Sendable {
    private let runs = Mutex<[Int: Int]>([:])
    func record(_ call: Int) { runs.withLock { $0[call, default: 0] += 1 } }
    var counts: [Int: Int] { runs.withLock { $0 } }
}

distributed actor SimServer {
    typealias ActorSystem = SpindleActorSystem
    let index: Int
    let log: ExecutionLog

    init(index: Int, log: ExecutionLog, actorSystem: SpindleActorSystem) {
        self.index = index
        self.log = log
        self.actorSystem = actorSystem
    }

    distributed func compute(call: Int, x: Int) -> Int {
        log.record(call)
        return x &* 7 &+ index
    }
}

/// One seeded run of the fault-injection scenario: `calls` calls from 3 nodes to the actors
/// of the other nodes, over reliable links on the in-process transport, with drops,
/// duplicates, delays and partitions, all on one `ManualClock` and one `ManualExecutor`.
/// The trace lists how each call ended, in the order they ended, with the simulated step.
struct DeterministicRun {
    struct Outcome: Equatable, Sendable, CustomStringConvertible {
        var call: Int
        var step: Int
        var result: String
        var description: String { "#\(call)@\(step): \(result)" }
    }

    struct Report: Equatable, Sendable {
        var trace: [Outcome]
        var faults: FaultStats
        var delayed: Int
        var executions: [Int: Int]
        var expected: [Int: Int]
    }

    let seed: UInt64
    let calls: Int
    static let step = Duration.milliseconds(10)

    func run() async throws -> Report {
        let clock = ManualClock()
        let executor = ManualExecutor()
        var transportConfig = InProcessTransport.Configuration()
        transportConfig.delivery = .inline
        transportConfig.delayRelease = .manual
        transportConfig.clock = clock
        transportConfig.seed = seed
        let inner = InProcessTransport(configuration: transportConfig)
        inner.faults.setPlan(FaultPlan(dropProbability: 0.02, duplicateProbability: 0.02))
        let network = SimNetwork(inner: inner, clock: clock, seed: seed &* 31 &+ 7, delayProbability: 0.05,
                                 delayRange: .milliseconds(1) ... .milliseconds(60))
        let log = ExecutionLog()
        var systems: [SpindleActorSystem] = []
        var servers: [SimServer] = []
        for i in 0..<3 {
            var link = ReliableLink.Configuration()
            link.core = ReliableLinkCore.Configuration(
                initialBackoff: .milliseconds(10), maximumBackoff: .milliseconds(500), jitter: 0,
                seed: seed &+ UInt64(i), connectTimeout: .seconds(1), heartbeatInterval: .milliseconds(500),
                livenessBound: .seconds(2))
            var logger = Logger(label: "sim")
            logger.logLevel = .critical
            link.logger = logger
            let config = SpindleActorSystem.Configuration(
                nodeID: NodeID(raw: RawID128(high: 0x51, low: UInt64(i + 1))),
                listenAddress: .inproc(name: "n\(i)"), callTimeout: .seconds(10), clock: clock,
                automaticTicks: false, link: link, connectAttemptsBeforeLost: 4, executor: executor, logger: logger)
            let system = try await SpindleActorSystem(transport: network.transport(for: "n\(i)"), configuration: config)
            systems.append(system)
            servers.append(SimServer(index: i, log: log, actorSystem: system))
        }
        let refs = try (0..<3).map { i in try (0..<3).map { j in try SimServer.resolve(id: servers[j].id, using: systems[i]) } }

        // The scenario, all drawn from the seed.
        var rng = SplitMix64(seed: seed)
        var planned: [PlannedCall] = []
        var expected: [Int: Int] = [:]
        for k in 0..<calls {
            let caller = Int(rng.next() % 3)
            let target = (caller + 1 + Int(rng.next() % 2)) % 3
            let x = Int(rng.next() % 10_000)
            let budget = Duration.milliseconds(200 + Int64(rng.next() % 2_800))
            planned.append(PlannedCall(index: k, step: k * 2 + Int(rng.next() % 2), caller: caller, target: target,
                                       x: x, budget: budget))
            expected[k] = x &* 7 &+ target
        }
        // Partitions: one node at a time cut off, for 0.1 to 4 s (the liveness bound is 2 s).
        var partitions: [(start: Int, end: Int, node: Int)] = []
        var at = 20
        while at < calls * 2 {
            let length = 10 + Int(rng.next() % 390)
            partitions.append((at, at + length, Int(rng.next() % 3)))
            at += length + 50 + Int(rng.next() % 300)
        }

        let recorder = Recorder()

        func waitForLinkTasks() async {
            while systems.contains(where: { $0.linkTasksInFlight > 0 }) {
                try? await Task.sleep(for: .microseconds(50))
            }
        }
        func settle() async {
            while true {
                await waitForLinkTasks()
                if executor.runOne() { continue }
                await waitForLinkTasks()
                if !executor.hasWork { return }
            }
        }

        var next = 0
        var step = 0
        let maximumSteps = calls * 2 + 15_000
        while recorder.finished < calls {
            guard step < maximumSteps else {
                let done = Set(recorder.trace.map(\.call))
                throw TestFailure("simulation did not settle: calls \((0..<calls).filter { !done.contains($0) }.prefix(10)) never ended")
            }
            recorder.step = step
            for p in partitions {
                if p.start == step { inner.faults.isolate("n\(p.node)") }
                if p.end == step { inner.faults.healAll() }
            }
            while next < planned.count, planned[next].step == step {
                let c = planned[next]
                let ref = refs[c.caller][c.target]
                Task.detached(executorPreference: executor) {
                    let result: String
                    do {
                        let v = try await withDeadline(c.budget, clock: clock) { try await ref.compute(call: c.index, x: c.x) }
                        result = "= \(v)"
                    } catch let e as ActorCallError {
                        result = "! \(e.kind)"
                    } catch {
                        result = "! unexpected \(error)"
                    }
                    recorder.record(call: c.index, result: result)
                }
                next += 1
            }
            await settle()
            clock.advance(by: Self.step)
            network.releaseDue()
            await settle()
            for s in systems {
                await s.tick(afterEachLink: waitForLinkTasks)
                await settle()
            }
            step += 1
        }
        // Shut down while pumping the executor, in case a cancelled execution still has a job.
        let everyone = systems
        let closing = Task {
            for s in everyone { await s.shutdown() }
            recorder.closed = true
        }
        while !recorder.closed {
            await settle()
            try? await Task.sleep(for: .milliseconds(1))
        }
        await closing.value
        await waitForLinkTasks()
        await inner.shutdown()
        return Report(trace: recorder.trace, faults: inner.faults.stats, delayed: network.delayedCount,
                      executions: log.counts, expected: expected)
    }
}

private struct PlannedCall: Sendable {
    var index: Int
    var step: Int
    var caller: Int
    var target: Int
    var x: Int
    var budget: Duration
}

/// What the simulated callers report, read by the driver.
private final class Recorder: Sendable {
    private struct State {
        var step = 0
        var trace: [DeterministicRun.Outcome] = []
        var closed = false
    }
    private let state = Mutex(State())

    var step: Int {
        get { state.withLock { $0.step } }
        set { state.withLock { $0.step = newValue } }
    }
    var closed: Bool {
        get { state.withLock { $0.closed } }
        set { state.withLock { $0.closed = newValue } }
    }
    var trace: [DeterministicRun.Outcome] { state.withLock { $0.trace } }
    var finished: Int { state.withLock { $0.trace.count } }

    func record(call: Int, result: String) {
        state.withLock { $0.trace.append(.init(call: call, step: $0.step, result: result)) }
    }
}
