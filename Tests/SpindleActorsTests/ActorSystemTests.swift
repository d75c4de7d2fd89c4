import ActorFixtureActors
import Distributed
import Logging
import MetricsTestKit
import SpindleActors
import SpindleKernel
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("SpindleActorSystem")
struct ActorSystemTests {
    // MARK: In-process

    @Test("in process: a call, a generic call, a reference passed as an argument", arguments: [false, true])
    func inProcessCalls(startsCallsImmediately: Bool) async throws {
        try await withInProcessSystems(2, configure: { $0.startsCallsImmediately = startsCallsImmediately }) { systems, _ in
            let server = Calculator(actorSystem: systems[1])
            let helper = Calculator(actorSystem: systems[1])
            let remote = try Calculator.resolve(id: server.id, using: systems[0])
            #expect(try await remote.add(2, 3) == 5)
            #expect(try await remote.echo("text") == "text")
            #expect(try await remote.echo([1, 2, 3]) == [1, 2, 3])
            #expect(try await remote.echo(FixtureError(code: 1, message: "as a value")) == FixtureError(code: 1, message: "as a value"))
            #expect(try await remote.pair(7, "x") == ["7", "x"])
            // A reference travels as an argument; the callee calls it back on its own node.
            let helperRef = try Calculator.resolve(id: helper.id, using: systems[0])
            #expect(try await remote.relay(to: helperRef, 41) == 42)
            #expect(try await remote.whoAmI() == server.id)
            #expect(systems[0].statistics.callsStarted >= 7)
            #expect(systems[1].statistics.executions >= 7)
        }
    }

    @Test("in process: errors arrive typed, or as RemoteCallError")
    func inProcessErrors() async throws {
        try await withInProcessSystems(2) { systems, _ in
            let server = Calculator(actorSystem: systems[1])
            let remote = try Calculator.resolve(id: server.id, using: systems[0])
            await #expect(throws: FixtureError(code: 7, message: "refused 7")) { try await remote.failCodable(code: 7) }
            do {
                try await remote.failPlain()
                Issue.record("failPlain returned")
            } catch let e as RemoteCallError {
                #expect(e.actor == server.id)
                #expect(e.description == "plain error: not codable")
                #expect(e.errorType.contains("PlainError"))
            }
        }
    }

    @Test("in process: a resigned actor fails later calls with actorNotFound")
    func inProcessResigned() async throws {
        try await withInProcessSystems(2) { systems, _ in
            var server: Calculator? = Calculator(actorSystem: systems[1])
            let id = server!.id
            let remote = try Calculator.resolve(id: id, using: systems[0])
            #expect(try await remote.add(1, 1) == 2)
            server = nil
            #expect(await expectCallError { try await remote.add(1, 1) } == .actorNotFound(id))
            // A local reference to the resigned id fails the same way.
            let local = try Calculator.resolve(id: id, using: systems[1])
            #expect(await expectCallError { try await local.add(1, 1) } == .actorNotFound(id))
        }
    }

    @Test("in process: calls of one caller to one actor run in the order they were sent", arguments: [false, true])
    func inProcessFIFO(startsCallsImmediately: Bool) async throws {
        try await withInProcessSystems(2, configure: { $0.startsCallsImmediately = startsCallsImmediately }) { systems, _ in
            let server = Calculator(actorSystem: systems[1])
            let remote = try Calculator.resolve(id: server.id, using: systems[0])
            // 200 caller tasks on one serial executor: each sends its call before the next
            // task runs, so the send order is 1, 2, 3…; no call waits for another's reply.
            let executor = ManualExecutor()
            let results = Locked<[Int: Int]>([:])
            for i in 1...200 {
                Task.detached(executorPreference: executor) {
                    let total = try await remote.accumulate(i)
                    results.withLock { $0[i] = total }
                }
            }
            try await waitUntil("200 replies") {
                while executor.runOne() {}
                return results.value.count == 200
            }
            // Run in send order, each call saw the totals of exactly the calls before it.
            for i in 1...200 { #expect(results.value[i] == i * (i + 1) / 2, "call \(i)") }
        }
    }

    @Test("in process: a deadline that passes fails the call with timedOut and cancels the remote work", arguments: [false, true])
    func inProcessDeadline(startsCallsImmediately: Bool) async throws {
        try await withInProcessSystems(2, configure: { $0.startsCallsImmediately = startsCallsImmediately }) { systems, _ in
            let server = Calculator(actorSystem: systems[1])
            let remote = try Calculator.resolve(id: server.id, using: systems[0])
            let started = ContinuousClock.now
            let e = await expectCallError { try await withDeadline(.milliseconds(200)) { try await remote.slow(milliseconds: 60_000) } }
            guard case .timedOut(let budget) = e else { Issue.record("expected timedOut, got \(String(describing: e))"); return }
            #expect(budget <= .milliseconds(200))
            #expect(ContinuousClock.now - started < .seconds(20))
            #expect(systems[0].statistics.failures["timed_out"] == 1)
        }
    }

    @Test("in process: a well-known name, looked up by address")
    func wellKnownNames() async throws {
        try await withInProcessSystems(2) { systems, _ in
            let server = try systems[1].withWellKnownName("calculator") { Calculator(actorSystem: systems[1]) }
            #expect(server.id.local == .name("calculator"))
            #expect(throws: ActorSystemError.self) { try systems[1].withWellKnownName("calculator") { Calculator(actorSystem: systems[1]) } }
            #expect(throws: ActorSystemError.self) { try systems[1].withWellKnownName("9lives") { Calculator(actorSystem: systems[1]) } }
            let id = try await systems[0].actorID(named: "calculator", at: try #require(systems[1].address))
            #expect(id == server.id)
            #expect(try await Calculator.resolve(id: id, using: systems[0]).add(20, 22) == 42)
            // A name is free again once its actor is gone, and the old reference reaches the new actor.
            var first: Calculator? = try systems[1].withWellKnownName("reused") { Calculator(actorSystem: systems[1]) }
            let reusedID = first!.id
            let ref = try Calculator.resolve(id: reusedID, using: systems[0])
            #expect(try await ref.accumulate(5) == 5)
            first = nil
            #expect(await expectCallError { try await ref.accumulate(1) } == .actorNotFound(reusedID))
            let second = try systems[1].withWellKnownName("reused") { Calculator(actorSystem: systems[1]) }
            #expect(second.id == reusedID)
            #expect(try await ref.accumulate(7) == 7)
            #expect(await expectCallError { try await systems[0].actorID(named: "x", at: .inproc(name: "nobody-listens-here")) } != nil)
        }
    }
}

extension ActorSystemTests {
    // MARK: Deterministic, with fault injection

    @Test("deterministic: 1000 calls from 3 nodes to 3 actors under drops, duplicates, delays and partitions; replays from its seed")
    func deterministicFaults() async throws {
        let seed: UInt64 = 0xAC7085
        // The driver runs on a thread of its own: it computes for a while without suspending.
        let thread = try DedicatedThreadExecutor()
        defer { thread.shutdown() }
        let first = try await withTaskExecutorPreference(thread) { try await DeterministicRun(seed: seed, calls: 1000).run() }
        // Every call ended exactly once: with its correct result, or a typed error.
        #expect(first.trace.count == 1000)
        #expect(Set(first.trace.map(\.call)) == Set(0..<1000))
        var succeeded = 0
        for o in first.trace {
            if o.result.hasPrefix("= ") {
                #expect(o.result == "= \(first.expected[o.call]!)", "call \(o.call)")
                #expect(first.executions[o.call] == 1, "call \(o.call) answered but ran \(first.executions[o.call] ?? 0) times")
                succeeded += 1
            } else {
                #expect(["! timed_out", "! peer_lost"].contains(o.result), "call \(o.call): \(o.result)")
            }
        }
        // No call ran twice, even when its envelope was duplicated or retransmitted.
        #expect(first.executions.values.allSatisfy { $0 == 1 })
        // The scenario did inject every kind of fault, and most calls still got through.
        #expect(first.faults.dropped > 0 && first.faults.duplicated > 0 && first.faults.partitioned > 0 && first.delayed > 0)
        #expect(succeeded > 500)
        #expect(first.trace.contains { $0.result == "! peer_lost" })
        #expect(first.trace.contains { $0.result == "! timed_out" })
        // The same seed replays the same run, end to end.
        let second = try await withTaskExecutorPreference(thread) { try await DeterministicRun(seed: seed, calls: 1000).run() }
        #expect(second == first)
    }
}

extension ActorSystemTests {
    // MARK: Over TCP, between two processes

    @Test("over TCP: a call and a generic call reach another process")
    func tcpCalls() async throws {
        try await RemotePeer.with { peer in
            #expect(try await peer.calculator.add(40, 2) == 42)
            #expect(try await peer.calculator.echo("over the wire") == "over the wire")
            #expect(try await peer.calculator.echo([[1.5], [2.5, 3.5]]) == [[1.5], [2.5, 3.5]])
            #expect(try await peer.calculator.pair(FixtureError(code: 3, message: "m"), Int8(-4)).count == 2)
            let remotePID = try await peer.observer.processID()
            #expect(remotePID == peer.process.pid && remotePID != currentProcessID())
        }
    }

    @Test("over TCP: a thrown Codable error arrives typed, any other error as RemoteCallError")
    func tcpErrors() async throws {
        try await RemotePeer.with { peer in
            await #expect(throws: FixtureError(code: 9, message: "refused 9")) { try await peer.calculator.failCodable(code: 9) }
            do {
                try await peer.calculator.failPlain()
                Issue.record("failPlain returned")
            } catch let e as RemoteCallError {
                #expect(e.actor == peer.calculator.id)
                #expect(e.description == "plain error: not codable")
                #expect(e.errorType.hasSuffix("PlainError"))
            }
            #expect(peer.client.statistics.failures["remote_error"] == 2)
        }
    }

    @Test("over TCP: an exceeded deadline fails the call with timedOut and stops the remote work")
    func tcpDeadline() async throws {
        try await RemotePeer.with { peer in
            let started = ContinuousClock.now
            let e = await expectCallError {
                try await withDeadline(.milliseconds(300)) { try await peer.calculator.work(tag: "deadline") }
            }
            guard case .timedOut(let budget) = e else { Issue.record("expected timedOut, got \(String(describing: e))"); return }
            #expect(budget <= .milliseconds(300) && budget > .milliseconds(200))
            #expect(ContinuousClock.now - started < .seconds(10))
            // The remote side ran under the same deadline and cancelled its execution.
            try await peer.waitForWorkLog("cancelled deadline")
            #expect(try await peer.observer.workLog().contains("finished deadline") == false)
        }
    }

    @Test("over TCP: cancelling the caller's task cancels the remote execution")
    func tcpCancellation() async throws {
        try await RemotePeer.with { peer in
            let calculator = peer.calculator
            let call = Task { try await calculator.work(tag: "cancel-me") }
            try await peer.waitForWorkLog("started cancel-me")
            call.cancel()
            let result = await call.result
            guard case .failure(let error) = result, let e = error as? ActorCallError else {
                Issue.record("expected a cancelled call, got \(result)")
                return
            }
            #expect(e == .cancelled)
            try await peer.waitForWorkLog("cancelled cancel-me")
            // The actor is free again: a later call from the same caller runs.
            #expect(try await peer.calculator.add(1, 2) == 3)
        }
    }

    @Test("over TCP: an actor that resigned fails calls with actorNotFound")
    func tcpResigned() async throws {
        try await RemotePeer.with { peer in
            let gone = try await peer.observer.resignedCalculatorID()
            #expect(gone.node == peer.calculator.id.node)
            let ref = try Calculator.resolve(id: gone, using: peer.client)
            #expect(await expectCallError { try await ref.add(1, 1) } == .actorNotFound(gone))
            // Other actors of that node still answer.
            #expect(try await peer.calculator.add(1, 1) == 2)
        }
    }

    @Test("over TCP: kill -9 of the remote process fails every pending call with peerLost within the bound")
    func tcpKill() async throws {
        let bound = Duration.seconds(3)
        try await RemotePeer.with(configure: { $0.link.core.livenessBound = bound }) { peer in
            #expect(try await peer.calculator.add(1, 1) == 2)
            let calculator = peer.calculator
            let pending = (0..<8).map { i in
                Task { try await calculator.work(tag: "doomed-\(i)") }
            }
            try await peer.waitForWorkLog("started doomed-0")
            let killed = ContinuousClock.now
            try peer.process.kill(SIGKILL)
            for task in pending {
                let result = await task.result
                guard case .failure(let error) = result, case .peerLost(let node, _)? = error as? ActorCallError else {
                    Issue.record("expected peerLost, got \(result)")
                    continue
                }
                #expect(node == calculator.id.node)
            }
            let elapsed = ContinuousClock.now - killed
            #expect(elapsed < bound + .seconds(5), "pending calls failed \(elapsed) after the kill")
            // Later calls fail the same way instead of hanging.
            if case .peerLost? = await expectCallError({ try await calculator.add(1, 1) }) {} else {
                Issue.record("a call after the kill did not fail with peerLost")
            }
        }
    }
}

extension ActorSystemTests {
    @Test("over TCP: a peer that falls silent (SIGSTOP) is declared lost by the liveness bound")
    func tcpSilentPeer() async throws {
        let bound = Duration.seconds(2)
        try await RemotePeer.with(configure: {
            $0.link.core.livenessBound = bound
            $0.link.core.heartbeatInterval = .milliseconds(300)
        }) { peer in
            #expect(try await peer.calculator.add(1, 1) == 2)
            try peer.process.kill(SIGSTOP)
            // The signal is delivered asynchronously: wait until the process is stopped.
            try await waitUntil("the peer stopped") { processState(peer.process.pid) == "T" }
            let started = ContinuousClock.now
            let e = await expectCallError { try await peer.calculator.add(2, 2) }
            let elapsed = ContinuousClock.now - started
            try? peer.process.kill(SIGCONT)
            guard case .peerLost(let node, let reason)? = e else { Issue.record("expected peerLost, got \(String(describing: e))"); return }
            #expect(node == peer.calculator.id.node)
            #expect(reason.contains("nothing heard"))
            // Well short of the call's 30 s timeout; the bound stretches on a loaded machine, whose
            // own stalls the links forgive.
            #expect(elapsed < bound + .seconds(10), "the call failed \(elapsed) after the peer stopped")
        }
    }

    @Test("metrics count calls, failures by kind and latency; failures are logged with actor, target and node")
    func metricsAndLogs() async throws {
        let metrics = TestMetrics()
        let logs = CapturedLogs()
        try await withInProcessSystems(2, configure: {
            $0.metricsFactory = metrics
            $0.logger = Logger(label: "test") { _ in CapturingLogHandler(logs) }
            $0.logger.logLevel = .debug
        }) { systems, _ in
            let server = Calculator(actorSystem: systems[1])
            let remote = try Calculator.resolve(id: server.id, using: systems[0])
            _ = try await remote.add(1, 2)
            _ = try await remote.add(3, 4)
            _ = await #expect(throws: FixtureError.self) { try await remote.failCodable(code: 1) }
            _ = await expectCallError { try await withDeadline(.milliseconds(50)) { try await remote.slow(milliseconds: 30_000) } }
            let node = [("node", systems[0].node.description)]
            #expect(try metrics.expectCounter("spindle_actor_calls_total", node).totalValue == 4)
            #expect(try metrics.expectCounter("spindle_actor_call_failures_total", node + [("kind", "timed_out")]).totalValue == 1)
            #expect(try metrics.expectCounter("spindle_actor_call_failures_total", node + [("kind", "remote_error")]).totalValue == 1)
            #expect(try metrics.expectTimer("spindle_actor_call_duration", node).values.count == 3)
            let served = [("node", systems[1].node.description)]
            try await waitUntil("executions counted") {
                (try? metrics.expectCounter("spindle_actor_executions_total", served).totalValue) == 4
            }
            let failure = try #require(logs.entries.first { $0.message == "actor call failed" })
            #expect(failure.metadata["actor"] == "\(server.id)")
            #expect(failure.metadata["target"]?.contains("slow") == true)
            #expect(failure.metadata["node"] == "\(systems[0].node)")
            // The callee logs the caller's node for the call its deadline cancelled.
            try await waitUntil("the callee's log") { logs.entries.contains { $0.message == "received call failed" } }
            let served2 = try #require(logs.entries.first { $0.message == "received call failed" })
            #expect(served2.metadata["caller"] == "\(systems[0].node)")
        }
    }
}

/// Log entries a test captured.
final class CapturedLogs: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }
    private let state = Mutex<[Entry]>([])
    func append(_ e: Entry) { state.withLock { $0.append(e) } }
    var entries: [Entry] { state.withLock { $0 } }
}

struct CapturingLogHandler: LogHandler {
    let logs: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(_ logs: CapturedLogs) { self.logs = logs }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        logs.append(.init(level: event.level, message: event.message.description, metadata: all.mapValues { "\($0)" }))
    }
}
