import TaskQueueTestSupport
import SpindleTaskQueue
import Synchronization

/// A task of the scheduler tests: a name and what the worker should answer.
struct ScriptTask: Sendable, Equatable, CustomStringConvertible {
    var name: String
    /// Only a worker that already answered a task (`old`) may take it.
    var needsOld = false
    /// `request(for:)` returns nil for it.
    var stale = false
    /// What `use` decides: nil = stay; "end" = end; else tasks to inject (comma separated).
    var decision: String? = nil
    var description: String { name }
}

enum ScriptEvent: Sendable, Equatable {
    case used(String, competence: Int)
    case failed(String?, TaskFailure)
    case marshal(String)
    case feedback(String, String)
}

/// A kind driven by scripts, for the scheduler and thread-queue tests.
struct ScriptKind: TaskKind {
    typealias Task = ScriptTask
    typealias Competence = Int
    typealias Request = String
    typealias Response = String
    typealias Feedback = String

    let recorder: Recorder<ScriptEvent>

    func request(for task: ScriptTask, status: WorkerStatus<Int>) -> String? {
        task.stale ? nil : task.name
    }

    func matches(_ task: ScriptTask, status: WorkerStatus<Int>) -> Bool {
        if task.needsOld, case .fresh = status { return false }
        return true
    }

    func use(_ response: String, for task: ScriptTask, status: WorkerStatus<Int>) -> ResponseDecision<ScriptTask, Int> {
        var done = 0
        if case .old(let n) = status { done = n }
        recorder.record(.used(response, competence: done))
        switch task.decision {
        case nil: return .stay(done + 1, inject: [])
        case "end": return .end
        case let list?:
            return .stay(done + 1, inject: list.split(separator: ",").map { ScriptTask(name: String($0)) })
        }
    }

    func marshalFailed(_ error: MarshalError, task: ScriptTask) {
        recorder.record(.marshal(task.name))
    }

    func cancelledExpiredOrWorkerDied(_ task: ScriptTask?, reason: TaskFailure) {
        recorder.record(.failed(task?.name, reason))
    }

    func forward(_ feedback: String, from worker: WorkerID, task: ScriptTask) {
        recorder.record(.feedback(task.name, feedback))
    }

    /// Worker side: "sleep" tasks spin until cancelled; "fb" tasks emit three feedbacks.
    static func perform(_ request: String, context: PerformContext<String>) -> String {
        if request.hasPrefix("fb") {
            for i in 1...3 { context.emit("\(request)#\(i)") }
        }
        if request.hasPrefix("block") {
            ScriptProbe.blocked.add(1, ordering: .relaxed)
            let clock = ContinuousClock()
            let until = clock.now + .seconds(30)
            while !context.isCancelled && clock.now < until {}
            ScriptProbe.blocked.subtract(1, ordering: .relaxed)
        }
        if request.hasPrefix("conc") {
            let now = ScriptProbe.concurrent.add(1, ordering: .acquiringAndReleasing).newValue
            var seen = ScriptProbe.maxConcurrent.load(ordering: .relaxed)
            while now > seen {
                let (exchanged, original) = ScriptProbe.maxConcurrent.compareExchange(
                    expected: seen, desired: now, ordering: .relaxed)
                if exchanged { break }
                seen = original
            }
            for _ in 0..<2_000 { _ = ScriptProbe.concurrent.load(ordering: .relaxed) }
            ScriptProbe.concurrent.subtract(1, ordering: .acquiringAndReleasing)
        }
        if request.hasPrefix("hold") {
            ScriptProbe.holdRunning.add(1, ordering: .relaxed)
            while ScriptProbe.holdRelease.load(ordering: .acquiring) == false && !context.isCancelled {}
            ScriptProbe.holdRunning.subtract(1, ordering: .relaxed)
        }
        return request
    }

    static func received(broadcast feedback: String) {
        ScriptProbe.broadcasts.add(1, ordering: .relaxed)
    }
}

/// Process-wide probes the worker side of ScriptKind updates.
enum ScriptProbe {
    static let blocked = Atomic<Int>(0)
    static let broadcasts = Atomic<Int>(0)
    static let holdRunning = Atomic<Int>(0)
    static let holdRelease = Atomic<Bool>(false)
    static let concurrent = Atomic<Int>(0)
    static let maxConcurrent = Atomic<Int>(0)
}
