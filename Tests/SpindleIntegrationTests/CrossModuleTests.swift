// Modules working together through the umbrella `import Spindle`, as an application uses them.
import Spindle
import Synchronization
import Testing

@Suite("Spindle modules together")
struct CrossModuleTests {
    // MARK: Task queue workers that fork tasklets

    /// Each task sums the squares of a range with a 3-lane tasklet (fuel per element from a
    /// shared pool); two thread workers launch on the shared tasklet pool at the same time.
    struct SquareSumKind: TaskKind {
        struct Range: Codable, Sendable { var lower: Int; var upper: Int }
        struct Answer: Codable, Sendable { var lower: Int; var sum: Int64?; var fuel: UInt64; var error: String? }
        typealias Task = Range
        typealias Competence = Int
        typealias Request = Range
        typealias Response = Answer

        let answers: Answers

        func request(for task: Range, status: WorkerStatus<Int>) -> Range? { task }
        func use(_ response: Answer, for task: Range, status: WorkerStatus<Int>) -> ResponseDecision<Range, Int> {
            answers.record(response)
            return .stay(0, inject: [])
        }
        func marshalFailed(_ error: MarshalError, task: Range) {
            answers.record(Answer(lower: task.lower, sum: nil, fuel: 0, error: "marshal: \(error)"))
        }
        func cancelledExpiredOrWorkerDied(_ task: Range?, reason: TaskFailure) {
            answers.record(Answer(lower: task?.lower ?? -1, sum: nil, fuel: 0, error: "lost: \(reason)"))
        }

        static func perform(_ range: Range, context: PerformContext<NoFeedback>) -> Answer {
            do {
                let result = try Tasklet.launch(workers: 3, shared: range, scratch: { _ in Int64(0) },
                                                fuel: .sharedPool(UInt64(range.upper - range.lower))) { coord in
                    try coord.parallelForWorkers { w in
                        var total: Int64 = 0
                        var n = w.shared.lower + w.dataIndex
                        while n < w.shared.upper {
                            try w.fuelCheckpoint(1)
                            total &+= Int64(n) * Int64(n)
                            n += w.dataWorkerCount
                        }
                        w.scratch = total
                    }
                    let total = (0..<coord.dataWorkerCount).map { coord.dataScratch($0) }.reduce(0, &+)
                    coord.setOutput(withUnsafeBytes(of: total.littleEndian) { Array($0) })
                }
                let sum = result.output.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
                return Answer(lower: range.lower, sum: sum, fuel: result.fuelUsed, error: nil)
            } catch {
                return Answer(lower: range.lower, sum: nil, fuel: 0, error: "\(error)")
            }
        }
    }

    final class Answers: Sendable {
        private let state = Mutex<[SquareSumKind.Answer]>([])
        func record(_ answer: SquareSumKind.Answer) { state.withLock { $0.append(answer) } }
        var all: [SquareSumKind.Answer] { state.withLock { $0 } }
    }

    static func squareSum(_ lower: Int, _ upper: Int) -> Int64 {
        func below(_ n: Int) -> Int64 { let n = Int64(n); return (n - 1) * n * (2 * n - 1) / 6 }
        return below(upper) - below(lower)
    }

    @Test("thread workers of a task queue each fork a tasklet; every answer is exact")
    func queueWorkersForkTasklets() async throws {
        let answers = Answers()
        var config = TaskQueue<SquareSumKind>.Configuration(workers: 2)
        config.shutdownGrace = .seconds(5)
        let queue = try await TaskQueue(kind: SquareSumKind(answers: answers), backend: ThreadWorkerBackend<SquareSumKind>(),
                                        configuration: config)
        let ranges = stride(from: 0, to: 50_000, by: 1_000).map { SquareSumKind.Range(lower: $0, upper: $0 + 1_000) }
        try await queue.enqueue(contentsOf: ranges)
        await queue.join()
        await queue.shutdown()

        let got = answers.all
        #expect(got.count == ranges.count)
        #expect(got.allSatisfy { $0.error == nil }, "failures: \(got.compactMap(\.error).prefix(3))")
        for answer in got {
            #expect(answer.sum == Self.squareSum(answer.lower, answer.lower + 1_000), "range starting \(answer.lower)")
            #expect(answer.fuel == 1_000)
        }
        #expect(Set(got.map(\.lower)) == Set(ranges.map(\.lower)))
    }

    // MARK: Two nodes over authenticated TCP

    final class Doubler: Component {
        let signatures = [OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)])]
        func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
            .immediate(OpOutputs(.int((inputs[0]?.intValue ?? 0) * 2)))
        }
    }

    /// Outcomes a driver reports, with a wait that fails after a timeout instead of hanging.
    final class Outcomes: Sendable {
        private let state = Mutex<(values: [Int64], failures: [String])>(([], []))
        private let arrived = AsyncStream<Void>.makeStream()

        func add(_ outcome: PollOutcome) {
            let any = state.withLock { s -> Bool in
                for finished in outcome.finished {
                    if let v = finished.result("answer")?.intValue {
                        s.values.append(v)
                    } else {
                        s.failures.append(finished.result("problem").map { "\($0)" } ?? "no answer")
                    }
                }
                return !outcome.finished.isEmpty
            }
            if any { arrived.continuation.yield() }
        }

        /// Waits until `count` executions finished; false after `timeout`.
        func wait(for count: Int, timeout: Duration) async -> Bool {
            if finished(count) { return true }
            return await withTaskGroup(of: Bool.self) { group in
                group.addTask { [self] in
                    for await _ in arrived.stream where finished(count) { return true }
                    return finished(count)
                }
                group.addTask {
                    try? await Task.sleep(for: timeout)
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                arrived.continuation.finish()
                return first || finished(count)
            }
        }

        private func finished(_ count: Int) -> Bool {
            state.withLock { $0.values.count + $0.failures.count >= count }
        }

        var values: [Int64] { state.withLock { $0.values } }
        var failures: [String] { state.withLock { $0.failures } }
    }

    @Test("a node asks another node over TCP with a cluster key; all 100 answers come back doubled")
    func nodesOverAuthenticatedTCP() async throws {
        let loop = try EventLoop(name: "it-nodes")
        var tcpConfig = TCPTransport.Configuration()
        tcpConfig.clusterKey = ClusterKey.random()
        let tcp = TCPTransport(loop: loop, configuration: tcpConfig)
        var drivers: [NodeDriver] = []
        func tearDown() async {
            for driver in drivers { await driver.shutdown() }
            await tcp.shutdown()
            await loop.shutdown()
        }
        do {
            var server = ProgramBuilder("doubler")
            server.site("ask", .int)
            server.site("doubled", .int)
            server.op("double", .component(slot: "math", op: "double"), inputs: ["x": "ask"], outputs: ["y": "doubled"])
            server.syscall("reply", .reply, inputs: ["in": "doubled"])
            let b = Node(id: .generate())
            try b.install(Doubler(), at: "math")
            try b.install(server.program)
            let bID = b.id
            let driverB = try await NodeDriver.start(node: b, on: loop, transport: tcp,
                                                     configuration: .init(listenAddress: .tcp(host: "127.0.0.1", port: 0)))
            drivers.append(driverB)
            let bAddress = try #require(driverB.listenAddress)

            var client = ProgramBuilder("asker")
            client.site("question", .int)
            client.site("answer", .int)
            client.site("problem", .string)
            client.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer", "error": "problem"],
                           params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(10_000)])
            let a = Node(id: .generate())
            try a.install(client.program)
            a.addPeer(bID, name: "b", addresses: [bAddress])
            let outcomes = Outcomes()
            var config = NodeDriver.Configuration()
            config.onOutcome = { outcomes.add($0) }
            let driverA = try await NodeDriver.start(node: a, on: loop, transport: tcp, configuration: config)
            drivers.append(driverA)

            for i in 1...100 { try driverA.start(site: "question", value: .int(Int64(i))) }
            let finished = await outcomes.wait(for: 100, timeout: .seconds(30))
            #expect(finished, "only \(outcomes.values.count) answers and \(outcomes.failures.count) failures arrived")
            #expect(outcomes.failures.isEmpty, "failures: \(outcomes.failures.prefix(3))")
            #expect(outcomes.values.sorted() == (1...100).map { Int64($0 * 2) })
        } catch {
            await tearDown()
            throw error
        }
        await tearDown()
    }
}
