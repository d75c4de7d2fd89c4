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
    /// Throw a `FixtureError` (listed in `errorTypes`: it reaches the master as itself).
    case throwListed
    /// Throw an error the kind does not list (it reaches the master as a `RemoteTaskError`).
    case throwUnlisted
    /// A request the worker cannot decode (its `init(from:)` refuses the poison id).
    case poisonRequest
    /// A response the master cannot decode (its `init(from:)` refuses the poison value).
    case poisonResponse
    /// Answer through the `async` perform after a suspension.
    case asyncEcho
}

/// An error a fixture task throws on purpose; `Codable`, so it crosses processes as itself.
public struct FixtureError: Error, Codable, Equatable, CustomStringConvertible {
    public var code: Int
    public var note: String
    public init(code: Int, note: String) {
        self.code = code
        self.note = note
    }
    public var description: String { "fixture error \(code): \(note)" }
}

/// An error the fixture kind does not list in `errorTypes`.
public struct UnlistedFixtureError: Error, Codable, CustomStringConvertible {
    public var description: String { "an unlisted fixture error" }
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

    init(id: Int, op: FixtureOp, weight: Double) {
        self.id = id
        self.op = op
        self.weight = weight
    }

    enum CodingKeys: String, CodingKey { case id, op, weight }

    /// Refuses `.poisonRequest`: only the worker decodes requests, so this fails there.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        op = try c.decode(FixtureOp.self, forKey: .op)
        weight = try c.decode(Double.self, forKey: .weight)
        if op == .poisonRequest {
            throw DecodingError.dataCorruptedError(forKey: .op, in: c, debugDescription: "poisoned request \(id)")
        }
    }
}

public struct FixtureResponse: Codable, Sendable {
    public var id: Int
    public var pid: Int32
    public var value: Double
    /// The last broadcast this worker received, if any.
    public var lastBroadcast: String? = nil

    /// Marks a response the master refuses to decode.
    public static let poison = -12_345.0

    init(id: Int, pid: Int32, value: Double, lastBroadcast: String? = nil) {
        self.id = id
        self.pid = pid
        self.value = value
        self.lastBroadcast = lastBroadcast
    }

    enum CodingKeys: String, CodingKey { case id, pid, value, lastBroadcast }

    /// Refuses the poison value: only the master decodes responses, so this fails there.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        pid = try c.decode(Int32.self, forKey: .pid)
        value = try c.decode(Double.self, forKey: .value)
        lastBroadcast = try c.decodeIfPresent(String.self, forKey: .lastBroadcast)
        if value == Self.poison {
            throw DecodingError.dataCorruptedError(forKey: .value, in: c, debugDescription: "poisoned response \(id)")
        }
    }
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
    public static var errorTypes: [any (Error & Codable).Type] { [FixtureError.self] }

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

    public static func perform(_ request: FixtureRequest, context: PerformContext<String>) throws -> FixtureResponse {
        let pid = getpid()
        switch request.op {
        case .throwListed:
            throw FixtureError(code: request.id, note: "thrown in \(pid)")
        case .throwUnlisted:
            throw UnlistedFixtureError()
        case .poisonRequest:
            return FixtureResponse(id: request.id, pid: pid, value: 0)
        case .poisonResponse:
            return FixtureResponse(id: request.id, pid: pid, value: FixtureResponse.poison)
        case .asyncEcho:
            // The worker then runs the async perform (the sentinel an async-only kind's
            // default synchronous perform throws).
            throw AsyncPerformRequired()
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

    /// Only `.asyncEcho` gets here (the synchronous form sends it on): it answers after a
    /// suspension.
    public static func perform(_ request: FixtureRequest, context: PerformContext<String>) async throws -> FixtureResponse {
        guard request.op == .asyncEcho else {
            func synchronous() throws -> FixtureResponse { try perform(request, context: context) }
            return try synchronous()
        }
        try await _Concurrency.Task.sleep(for: .milliseconds(1))
        return FixtureResponse(id: request.id, pid: getpid(), value: request.weight + 1)
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

/// Broadcast feedback that can fail both ways: a NaN `weight` cannot be encoded (master), the
/// text "poison" is refused when decoded (worker).
public struct Note: Codable, Sendable {
    public var text: String
    public var weight: Double
    public init(text: String, weight: Double = 1) {
        self.text = text
        self.weight = weight
    }

    enum CodingKeys: String, CodingKey { case text, weight }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        text = try c.decode(String.self, forKey: .text)
        weight = try c.decode(Double.self, forKey: .weight)
        if text == "poison" {
            throw DecodingError.dataCorruptedError(forKey: .text, in: c, debugDescription: "poisoned broadcast")
        }
    }
}

/// A kind whose broadcasts can fail; tasks answer the last broadcast text their worker got.
public struct NoteKind: TaskKind {
    public typealias Task = Int
    public typealias Competence = Int
    public typealias Request = Int
    public typealias Response = String
    public typealias Feedback = Note

    public static var name: String { "note-fixture" }

    let failures: @Sendable (MarshalError, WorkerID) -> Void

    public init(failures: @escaping @Sendable (MarshalError, WorkerID) -> Void) { self.failures = failures }

    public func request(for task: Int, status: WorkerStatus<Int>) -> Int? { task }
    public func use(_ response: String, for task: Int, status: WorkerStatus<Int>) -> ResponseDecision<Int, Int> {
        .stay(0, inject: [])
    }
    public func cancelledExpiredOrWorkerDied(_ task: Int?, reason: TaskFailure) {}
    public func broadcastFailed(_ error: MarshalError, worker: WorkerID) { failures(error, worker) }

    static let lastNote = Mutex<String>("")
    public static func received(broadcast feedback: Note) { lastNote.withLock { $0 = feedback.text } }
    public static func perform(_ request: Int, context: PerformContext<Note>) -> String { lastNote.withLock { $0 } }
}
