import SpindleTaskQueue
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a fixture task asks its worker to do.
public enum FixtureOp: String, Codable, Sendable {
    /// Answer at once.
    case echo
    /// Emit three feedback messages, then answer.
    case feedback
    /// Emit "started", then spin until killed (30 s at most).
    case block
    /// Answer, and make the master end (retire) the worker.
    case end
    /// Answer with a value JSON cannot encode (NaN).
    case unencodableResponse
    /// Exit the worker process abruptly.
    case crash
}

/// A fixture task: a number and an operation. `nanRequest` makes the request unencodable.
public struct FixtureTask: Sendable, Hashable, CustomStringConvertible {
    public var id: Int
    public var op: FixtureOp
    public var nanRequest: Bool

    public init(id: Int, op: FixtureOp = .echo, nanRequest: Bool = false) {
        self.id = id
        self.op = op
        self.nanRequest = nanRequest
    }

    public var description: String { "\(op)#\(id)" }
}

public struct FixtureRequest: Codable, Sendable {
    public var id: Int
    public var op: FixtureOp
    public var weight: Double
}

public struct FixtureResponse: Codable, Sendable {
    public var id: Int
    public var pid: Int32
    public var value: Double
    /// The last broadcast this worker received, if any.
    public var lastBroadcast: String? = nil
}

/// Worker-side memory of the last broadcast (one per worker process).
let lastBroadcast = Mutex<String?>(nil)

/// What the fixture kind's master-side hooks saw.
public enum FixtureEvent: Sendable, Equatable {
    case answered(id: Int, pid: Int32)
    case failed(id: Int?, TaskFailure)
    case marshal(id: Int, MarshalError.Direction)
    case feedback(id: Int, String, pid: Int32?)
    case sawBroadcast(id: Int, String)
}

/// The task kind the process-worker tests run; the fixture executable registers it.
public struct FixtureKind: TaskKind {
    public typealias Task = FixtureTask
    public typealias Competence = Int
    public typealias Request = FixtureRequest
    public typealias Response = FixtureResponse
    public typealias Feedback = String

    public static var name: String { "fixture" }

    let sink: @Sendable (FixtureEvent) -> Void

    public init(sink: @escaping @Sendable (FixtureEvent) -> Void) {
        self.sink = sink
    }

    public func request(for task: FixtureTask, status: WorkerStatus<Int>) -> FixtureRequest? {
        FixtureRequest(id: task.id, op: task.op, weight: task.nanRequest ? .nan : 1)
    }

    public func use(_ response: FixtureResponse, for task: FixtureTask,
                    status: WorkerStatus<Int>) -> ResponseDecision<FixtureTask, Int> {
        sink(.answered(id: response.id, pid: response.pid))
        if let note = response.lastBroadcast { sink(.sawBroadcast(id: response.id, note)) }
        if task.op == .end { return .end }
        if case .old(let n) = status { return .stay(n + 1, inject: []) }
        return .stay(1, inject: [])
    }

    public func marshalFailed(_ error: MarshalError, task: FixtureTask) {
        sink(.marshal(id: task.id, error.direction))
    }

    public func cancelledExpiredOrWorkerDied(_ task: FixtureTask?, reason: TaskFailure) {
        sink(.failed(id: task?.id, reason))
    }

    public func forward(_ feedback: String, from worker: WorkerID, task: FixtureTask) {
        // "started:<pid>" carries the worker's pid so tests can kill it.
        if feedback.hasPrefix("started:"), let pid = Int32(feedback.dropFirst(8)) {
            sink(.feedback(id: task.id, "started", pid: pid))
        } else {
            sink(.feedback(id: task.id, feedback, pid: nil))
        }
    }

    public static func received(broadcast feedback: String) {
        lastBroadcast.withLock { $0 = feedback }
    }

    public static func perform(_ request: FixtureRequest, context: PerformContext<String>) -> FixtureResponse {
        let pid = getpid()
        switch request.op {
        case .echo, .end:
            return FixtureResponse(id: request.id, pid: pid, value: request.weight,
                                   lastBroadcast: lastBroadcast.withLock { $0 })
        case .feedback:
            for i in 1...3 { context.emit("step \(i)") }
            return FixtureResponse(id: request.id, pid: pid, value: 3)
        case .block:
            context.emit("started:\(pid)")
            let clock = ContinuousClock()
            let until = clock.now + .seconds(30)
            while clock.now < until && !context.isCancelled { usleep(1000) }
            return FixtureResponse(id: request.id, pid: pid, value: 0)
        case .unencodableResponse:
            return FixtureResponse(id: request.id, pid: pid, value: .nan)
        case .crash:
            _exit(9)
        }
    }
}

/// A second kind registered by the fixture, to test handshakes by name.
public struct OtherFixtureKind: TaskKind {
    public typealias Task = Int
    public typealias Competence = Int
    public typealias Request = Int
    public typealias Response = Int

    public static var name: String { "other-fixture" }

    public init() {}

    public func request(for task: Int, status: WorkerStatus<Int>) -> Int? { task }
    public func use(_ response: Int, for task: Int, status: WorkerStatus<Int>) -> ResponseDecision<Int, Int> {
        .stay(0, inject: [])
    }
    public func cancelledExpiredOrWorkerDied(_ task: Int?, reason: TaskFailure) {}
    public static func perform(_ request: Int, context: PerformContext<NoFeedback>) -> Int { request + 1 }
}
