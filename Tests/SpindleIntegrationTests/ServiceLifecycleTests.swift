// The long-lived types a server embeds, run as services of a swift-service-lifecycle group.
import Logging
import ServiceLifecycle
import Spindle
import Synchronization
import Testing

@Suite("Services in a ServiceGroup", .timeLimit(.minutes(1)))
struct ServiceLifecycleTests {
    struct Doubler: TaskKind {
        typealias Task = Int
        typealias Competence = Int
        typealias Request = Int
        typealias Response = Int

        func request(for task: Int, status: WorkerStatus<Int>) -> Int? { task }
        func use(_ response: Int, for task: Int, status: WorkerStatus<Int>) -> ResponseDecision<Int, Int> { .stay(0, inject: []) }
        func marshalFailed(_ error: MarshalError, task: Int) {}
        func cancelledExpiredOrWorkerDied(_ task: Int?, reason: TaskFailure) {}
        static func perform(_ n: Int, context: PerformContext<NoFeedback>) -> Int { n * 2 }
    }

    @Test("a transport and a task queue serve until the group's graceful shutdown, then refuse work")
    func gracefulShutdownStopsBoth() async throws {
        let transport = try TCPTransport(loopCount: 1)
        let listener = try await transport.listen(on: .tcp(host: "127.0.0.1", port: 0)) { conn in
            conn.start(ConnectionHandler(onEnvelope: { try? conn.send($0) }, onClose: { _ in }))
        }
        let queue = try await TaskQueue(kind: Doubler(), backend: ThreadWorkerBackend<Doubler>(),
                                        configuration: .init(workers: 2))
        let group = ServiceGroup(services: [transport, queue], logger: Logger(label: "test.services"))
        let running = Task { try await group.run() }

        let handle = try await queue.enqueue(21)
        #expect(try await handle.value == 42)
        let probe = try TCPTransport(loopCount: 1)
        let connection = try await probe.connect(to: listener.address)
        connection.close()

        await group.triggerGracefulShutdown()
        try await running.value

        await #expect(throws: TaskQueueError.shutDown(kind: "\(Doubler.self)")) { try await queue.enqueue(1) }
        await #expect(throws: TransportError.self) { _ = try await probe.connect(to: listener.address) }
        await probe.shutdown()
    }
}
