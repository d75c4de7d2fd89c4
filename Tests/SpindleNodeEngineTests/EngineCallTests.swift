import MetricsTestKit
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleNodeEngine

/// `NodeDriver.call`, user types through the `Codable` bridge, typed ports, and remote calls
/// that carry and check every input.
@Suite("Engine calls")
struct EngineCallTests {
    static let order = Order(id: 42, lines: [.init(item: "tea", quantity: 2), .init(item: "cup", quantity: 3)],
                             note: nil, delivery: .courier(address: "1 Loop Road", express: true),
                             tags: ["gift": 1])

    // MARK: Codable bridge

    @Test func nestedCodableTypesRoundTripThroughValuesAndTheWireCodec() throws {
        let v = try Value(encoding: Self.order)
        guard case .record(let fields) = v else { Issue.record("not a record: \(v)"); return }
        #expect(Array(fields.keys) == ["id", "lines", "delivery", "tags"])    // declaration order, nil left out
        #expect(v[field: "lines"] == .list([.record(["item": .string("tea"), "quantity": .int(2)]),
                                            .record(["item": .string("cup"), "quantity": .int(3)])]))
        #expect(v[field: "id"] == .uint(42))
        #expect(try v.decode(Order.self) == Self.order)

        var bytes: [UInt8] = []
        ValueCodec.encode(v, into: &bytes)
        var reader = ValueCodec.Reader(bytes)
        let back = try reader.value()
        #expect(back == v && reader.isAtEnd)
        #expect(try back.decode(Order.self) == Self.order)

        var withNote = Self.order
        withNote.note = "ring twice"
        withNote.delivery = .pickup
        #expect(try Value(encoding: withNote).decode(Order.self) == withNote)
        #expect(try Value(encoding: [UInt8]([1, 2, 3])) == .bytes([1, 2, 3]))
        #expect(try Value(encoding: [Int?.none, 5]) == .list([.unit, .int(5)]))
        #expect(try Value.list([.unit, .int(5)]).decode([Int?].self) == [nil, 5])
    }

    @Test func decodingErrorsNameTheField() throws {
        var v = try Value(encoding: Self.order)
        guard case .record(var fields) = v, case .list(var lines) = fields["lines"]!,
              case .record(var line) = lines[1] else { Issue.record("unexpected shape"); return }
        line["quantity"] = .string("three")
        lines[1] = .record(line)
        fields["lines"] = .list(lines)
        v = .record(fields)
        #expect(throws: ValueCodingError(path: "lines[1].quantity", problem: "expected int, found string \"three\"")) {
            try v.decode(Order.self)
        }
        #expect(throws: ValueCodingError(path: "id", problem: "-1 does not fit UInt64")) {
            try Value.record(["id": .int(-1)]).decode(Order.self)
        }
        let missing = #expect(throws: ValueCodingError.self) { try Value.record([:]).decode(Quote.self) }
        #expect(missing?.path == "order")
    }

    @Test func typedInputPortsDecodeAndRefuseMismatchesNamingThePort() throws {
        let shop = ShopComponent()
        let node = Node(clock: ManualClock())
        try node.install(shop, at: "shop")
        let inputs = try OpInputs(["order": try Value(encoding: Self.order)], for: shop.signatures[0])
        #expect(try inputs.value(of: Order.self, at: "order") == Self.order)
        #expect(throws: InputBindingError.unknownPort(op: "price", port: "ordr", declared: ["order"])) {
            try inputs.value(at: "ordr")
        }
        let bad = try OpInputs(["order": .record(["id": .string("x")])], for: shop.signatures[0])
        do {
            _ = try bad.value(of: Order.self, at: "order")
            Issue.record("a string id decoded as UInt64")
        } catch {
            guard case .typeMismatch("price", "order", "Order", let inner) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(inner.path == "id")
            #expect(error.description.contains("op `price`, input port `order`"))
        }
        #expect(throws: InputBindingError.missing(op: "price", port: "order")) {
            try OpInputs([:], for: shop.signatures[0]).value(at: "order")
        }
    }

    // MARK: call

    @Test func callReturnsTheAnswerAndStartReturnsTheExecutionID() async throws {
        try await DriverPair.with(.inProcess) { pair in
            let answer = try await within(60, "a call to the server") {
                try await pair.client.call(site: "question", value: .int(21))
            }
            #expect(answer == .int(42))
            let finished = try await within(60, "a call returning sinks") {
                try await pair.client.callForSinks(site: "question", value: .int(5))
            }
            #expect(finished.results == ["answer": [.int(10)]] && finished.errors.isEmpty)
            let id = try pair.client.start(site: "question", value: .int(1))
            #expect(id != finished.id && id.value > finished.id.value)
        }
    }

    @Test func aTaskPreferringTheCallerExecutorIsResumedOnTheLoop() async throws {
        try await DriverPair.with(.tcp) { pair in
            let clientLoop = pair.loops[1]
            let (answers, onLoop) = try await within(60, "calls from the loop") {
                try await withTaskExecutorPreference(pair.client.callerExecutor) {
                    var answers: [Value] = [], onLoop = true
                    for i in 1...20 {
                        answers.append(try await pair.client.call(site: "question", value: .int(Int64(i))))
                        onLoop = onLoop && clientLoop.inEventLoop
                    }
                    return (answers, onLoop)
                }
            }
            #expect(answers == (1...20).map { .int(Int64($0 * 2)) })
            #expect(onLoop)
        }
    }

    @Test func aThousandConcurrentCallsOverTCPEachGetTheirOwnAnswer() async throws {
        try await DriverPair.with(.tcp) { pair in
            let answers = try await within(120, "1000 concurrent calls over TCP") {
                try await withThrowingTaskGroup(of: (Int64, Value).self) { group in
                    for i in 1...1000 {
                        group.addTask { (Int64(i), try await pair.client.call(site: "question", value: .int(Int64(i)))) }
                    }
                    var all: [(Int64, Value)] = []
                    for try await a in group { all.append(a) }
                    return all
                }
            }
            #expect(answers.count == 1000)
            #expect(answers.allSatisfy { $0.1 == .int($0.0 * 2) })
            let stats = pair.client.statistics
            #expect(stats.callsStarted == 1000 && stats.callsFailed == 0)
        }
    }

    @Test func userTypesTravelThroughCall() async throws {
        try await DriverPair.with(.tcp) { pair in
            let quote: Quote = try await within(60, "a typed call") {
                try await pair.client.call(site: "order", value: Self.order)
            }
            #expect(quote == Quote(order: 42, total: 12.5, items: 5))
            // The same, asked for with `as`.
            let again = try await within(60, "a typed call") {
                try await pair.client.call(site: "order", value: Self.order) as Quote
            }
            #expect(again == quote)
        }
    }

    @Test func aRemoteOpWithTwoRequiredInputsFires() async throws {
        try await DriverPair.with(.inProcess) { pair in
            let sum = try await within(60, "a two-input remote call") {
                try await pair.client.call(site: "pair", value: .record(["a": .int(2), "b": .int(3)]))
            }
            #expect(sum == .int(5))
        }
    }

    @Test func aMistypedRemoteValueIsRefusedNamingThePort() async throws {
        try await DriverPair.with(.inProcess) { pair in
            let error = await #expect(throws: NodeCallError.self) {
                try await within(60, "a mistyped remote call") {
                    try await pair.client.call(site: "pair", value: .record(["a": .int(2), "b": .string("three")]))
                }
            }
            guard case .failed(let failure)? = error, case .remote(let text) = failure.reason else {
                Issue.record("expected a remote failure, got \(String(describing: error))")
                return
            }
            #expect(failure.op == "add")
            #expect(text.contains("op `add`, input port `b` takes int values, not string"))
        }
    }

    @Test func callErrorsSayWhatWentWrong() async throws {
        try await DriverPair.with(.inProcess) { pair in
            let unknown = await #expect(throws: NodeCallError.self) { try await pair.client.call(site: "nope", value: .int(1)) }
            guard case .refused(_, .unknownSite("nope"))? = unknown else {
                Issue.record("unexpected \(String(describing: unknown))")
                return
            }
            let mistyped = await #expect(throws: NodeCallError.self) { try await pair.client.call(site: "question", value: .string("x")) }
            guard case .refused(_, .typeMismatch(site: "question", expected: .int, found: .string))? = mistyped else {
                Issue.record("unexpected \(String(describing: mistyped))")
                return
            }
            let decoding = await #expect(throws: NodeCallError.self) {
                _ = try await pair.client.call(site: "question", value: Int64(2), as: String.self)
            }
            guard case .decoding(let e)? = decoding else {
                Issue.record("unexpected \(String(describing: decoding))")
                return
            }
            #expect(e.problem == "expected string, found int 4")
        }
    }

    @Test func cancellingTheAwaitingTaskCancelsTheExecution() async throws {
        try await DriverPair.with(.inProcess) { pair in
            let task = Task { try await pair.client.call(site: "wait", value: .int(1)) }
            let parked = try await within(60, "the server parking the call") { await pair.parking.next() }
            task.cancel()
            let result = await task.result
            guard case .failure(let error) = result, case .cancelled? = error as? NodeCallError else {
                Issue.record("expected a cancelled call, got \(result)")
                return
            }
            let live = try await pair.client.withNode { $0.liveExecutions }
            #expect(live == 0)
            #expect(parked != nil)
        }
    }

    @Test func anExecutionTimeoutBoundsTheCallAndTravelsToThePeer() async throws {
        try await DriverPair.with(.inProcess) { pair in
            let call = Task { try await pair.client.call(site: "wait", value: .int(1), timeout: .milliseconds(200)) }
            let parked = try await within(60, "the server parking the call") { await pair.parking.next() }
            let budget = try #require(parked?.budget)
            #expect(budget > .zero && budget <= .milliseconds(200))
            let result = try await within(60, "a call with a timeout") { await call.result }
            guard case .failure(let error) = result, case .failed(let f)? = error as? NodeCallError else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(f.op == "hold" && f.reason == .timeout)
        }
    }

    @Test func countersArePublishedAsSpindleEngineMetrics() async throws {
        let metrics = TestMetrics()
        try await DriverPair.with(.inProcess, driver: { $0.metricsFactory = metrics }) { pair in
            _ = try await within(60, "a call") { try await pair.client.call(site: "question", value: .int(1)) }
            _ = await #expect(throws: NodeCallError.self) { try await pair.client.call(site: "nope", value: .int(1)) }
            let node = [("node", pair.client.nodeID.description)]
            #expect(try metrics.expectCounter("spindle_engine_calls_total", node).totalValue == 2)
            #expect(try metrics.expectCounter("spindle_engine_call_failures_total", node).totalValue == 1)
            #expect(try metrics.expectCounter("spindle_engine_envelopes_sent_total", node).totalValue >= 1)
            #expect(pair.client.statistics.envelopesReceived >= 1)
        }
    }

    // MARK: Failures the driver sees

    @Test func trafficWithNoRouteFailsItsCallAtOnce() async throws {
        try await DriverPair.with(.inProcess) { pair in
            let stranger = NodeID.generate()
            try await pair.client.withNode { $0.addPeer(stranger, name: "server") }   // renames `server` to a peer with no address
            let error = await #expect(throws: NodeCallError.self) {
                try await within(60, "a call with no route") { try await pair.client.call(site: "question", value: .int(1)) }
            }
            guard case .failed(let f)? = error, case .unreachable(stranger, let why) = f.reason else {
                Issue.record("unexpected \(String(describing: error))")
                return
            }
            #expect(why.contains("no route"))
            #expect(pair.client.statistics.unroutable >= 1)   // the request (and any heartbeat since)
        }
    }

    @Test func connectFailuresAreReportedAndFailTheCallsWhenThePeerIsDown() async throws {
        try await DriverPair.with(.inProcess, node: { $0.failuresUntilDown = 2 },
                                  driver: { $0.linkCheckInterval = .milliseconds(10) }) { pair in
            let ghost = NodeID.generate()
            try await pair.client.withNode { $0.addPeer(ghost, name: "server", addresses: [.inproc(name: "nobody-listens-here")]) }
            let error = await #expect(throws: NodeCallError.self) {
                try await within(60, "a call to an unreachable peer") {
                    try await pair.client.call(site: "question", value: .int(1))
                }
            }
            guard case .failed(let f)? = error, f.reason == .peerDown(ghost) else {
                Issue.record("unexpected \(String(describing: error))")
                return
            }
            #expect(pair.client.statistics.connectFailures >= 2)
            #expect(pair.client.statistics.peersDown == 1)
        }
    }

    @Test func aPeerKilledMidRunFailsItsPendingCallsWithinTheLivenessBound() async throws {
        try await DriverPair.with(.tcp, timeoutMs: 300_000, node: {
            $0.heartbeatInterval = .milliseconds(100)
            $0.livenessBound = .seconds(1)
            $0.suspicion.acceptablePause = .seconds(1)
        }) { pair in
            let calls = Task {
                try await withThrowingTaskGroup(of: NodeCallError?.self) { group in
                    for i in 0..<10 {
                        group.addTask {
                            do throws(NodeCallError) {
                                _ = try await pair.client.call(site: "wait", value: .int(Int64(i)))
                                return nil
                            } catch {
                                return error
                            }
                        }
                    }
                    var errors: [NodeCallError?] = []
                    for try await e in group { errors.append(e) }
                    return errors
                }
            }
            for _ in 0..<10 { _ = try await within(60, "the server parking every call") { await pair.parking.next() } }
            let killed = SystemClock().now()
            await pair.server.shutdown()
            await pair.transports[0].shutdown()
            let errors = try await within(60, "the pending calls failing") { try await calls.value }
            let elapsed = SystemClock().now() - killed
            #expect(errors.count == 10)
            for error in errors {
                guard case .failed(let f)? = error else { Issue.record("unexpected \(String(describing: error))"); continue }
                switch f.reason {
                case .peerDown(pair.serverID), .unreachable(pair.serverID, _): break
                default: Issue.record("unexpected reason \(f.reason)")
                }
            }
            // The calls' own deadline is 5 minutes: failing well before it, as peerDown or
            // unreachable, is the liveness handling (1 s bound; a loaded machine adds its stalls).
            #expect(elapsed < .seconds(60), "pending calls failed after \(elapsed), the liveness bound is 1 s")
        }
    }
}
