import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Counts primes in ranges. Workers keep how many ranges they have done as their competence
/// and retire after 25 (`.end`), so the demo shows recycling: fresh processes replace them.
struct PrimeCountKind: TaskKind {
    struct Task: Sendable { var lower: Int; var upper: Int }
    typealias Competence = Int
    struct Request: Codable, Sendable { var lower: Int; var upper: Int }
    struct Response: Codable, Sendable { var lower: Int; var primes: Int; var pid: Int32 }
    typealias Feedback = String

    let results: PrimeResults

    func request(for task: Task, status: WorkerStatus<Int>) -> Request? {
        Request(lower: task.lower, upper: task.upper)
    }

    func use(_ response: Response, for task: Task, status: WorkerStatus<Int>) -> ResponseDecision<Task, Int> {
        results.record(lower: response.lower, primes: response.primes, pid: response.pid)
        var done = 0
        if case .old(let n) = status { done = n }
        return done + 1 >= 25 ? .end : .stay(done + 1, inject: [])
    }

    func cancelledExpiredOrWorkerDied(_ task: Task?, reason: TaskFailure) {
        results.lost(task.map { "\($0.lower)..<\($0.upper)" } ?? "no task", reason: "\(reason)")
    }

    func marshalFailed(_ error: MarshalError, task: Task) {
        results.lost("\(task.lower)..<\(task.upper)", reason: "\(error)")
    }

    func forward(_ feedback: String, from worker: WorkerID, task: Task) {
        results.feedback()
    }

    static func perform(_ request: Request, context: PerformContext<String>) -> Response {
        context.emit("counting \(request.lower)..<\(request.upper)")
        var count = 0
        for n in request.lower..<request.upper where isPrime(n) { count += 1 }
        return Response(lower: request.lower, primes: count, pid: getpid())
    }

    static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}

/// What the master collected.
final class PrimeResults: Sendable {
    private struct State {
        var byRange: [Int: Int] = [:]
        var pids: Set<Int32> = []
        var lost: [String] = []
        var feedback = 0
    }
    private let state = Mutex(State())

    func record(lower: Int, primes: Int, pid: Int32) {
        state.withLock { $0.byRange[lower] = primes; $0.pids.insert(pid) }
    }
    func lost(_ what: String, reason: String) { state.withLock { $0.lost.append("\(what): \(reason)") } }
    func feedback() { state.withLock { $0.feedback += 1 } }

    var summary: (ranges: Int, primes: Int, pids: Int, lost: [String], feedback: Int) {
        state.withLock { s in (s.byRange.count, s.byRange.values.reduce(0, +), s.pids.count, s.lost, s.feedback) }
    }
}

/// Counts the primes below 2 M as 200 tasks on 2 worker processes (this executable re-entered in
/// worker mode) and checks the total against the known value 148 933.
func queueStep(_ log: DemoLog) async throws -> String {
    let results = PrimeResults()
    let kind = PrimeCountKind(results: results)
    let backend = try ProcessWorkerBackend<PrimeCountKind>()
    let queue = try await TaskQueue(kind: kind, backend: backend, configuration: .init(workers: 2))
    let step = 10_000
    let tasks = stride(from: 0, to: 2_000_000, by: step).map { PrimeCountKind.Task(lower: $0, upper: $0 + step) }
    _ = try await queue.enqueue(contentsOf: tasks)
    await queue.join()
    let snapshot = queue.snapshot()
    await queue.shutdown()
    let s = results.summary
    log.say("\(s.ranges) ranges done by \(s.pids) worker processes (\(snapshot.counters.workersRetired) retired and replaced), \(s.feedback) feedback messages")
    log.say("workers at the end: \(snapshot.workers.map(\.description).joined(separator: "; "))")
    guard s.lost.isEmpty else { throw DemoError("tasks lost: \(s.lost.prefix(3))") }
    guard s.ranges == tasks.count, s.primes == 148_933 else {
        throw DemoError("expected 148933 primes in \(tasks.count) ranges, got \(s.primes) in \(s.ranges)")
    }
    return "\(s.primes) primes below 2 M from \(s.ranges) tasks on process workers"
}
