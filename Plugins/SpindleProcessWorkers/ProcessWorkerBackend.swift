import Foundation
import SpindleKernel
import Logging
import SpindleEventLoop
import SpindleTaskQueue
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Workers as child processes: the same executable (or a configured one) re-entered in
/// worker mode through ``ProcessWorkerMain/runIfWorker(kinds:jobs:)``.
///
/// ```
///  master (TaskQueue) ── ProcessWorkerBackend ── EventLoop ──┬── stdin  ─▶ worker process
///                                                            └── stdout ◀─ (frames, WorkerWire)
/// ```
///
/// Each worker is spawned through SpindleEventLoop with `parentDeathSignal = SIGKILL`, so it
/// never outlives the master's loop thread. After spawning, the master sends a hello (protocol
/// version and kind name) and waits for the worker to accept. Requests are written as frames
/// to the worker's stdin (a dispatched batch in one write); answers and feedback come back
/// on its stdout, decoded on the loop thread. A worker that closes its stdout, exits or is
/// killed by anyone else is reported dead with its exit status; `kill` sends SIGKILL.
public final class ProcessWorkerBackend<Kind: TaskKind>: WorkerBackend {
    /// Options of the process backend.
    public struct Configuration: Sendable {
        /// The worker executable; default: this process's own executable.
        public var executable: String = ProcessWorkerBackend.currentExecutable()
        /// Arguments for the worker (`argv[1...]`).
        public var arguments: [String] = []
        /// Extra environment for workers (added to this process's environment and the kind's
        /// `workerEnvironment`).
        public var environment: [String: String] = [:]
        /// How long a new worker has to accept the handshake.
        public var handshakeTimeout: Duration = .seconds(20)
        /// How long shutdown waits for retired workers to exit before killing them.
        public var exitTimeout: Duration = .seconds(5)
        /// Largest frame either side sends: the master refuses larger frames from a worker
        /// (killing it), and tells the worker this limit in the handshake so that a response or
        /// error that would not fit comes back as a marshal failure instead.
        public var maxFrameSize: Int = 16 << 20
        /// Whether workers' stderr goes to this process's stderr (else it is discarded).
        public var inheritStderr: Bool = true
        public var logger = Logger(label: "spindle.processworkers")

        public init() {}
    }

    private let configuration: Configuration
    private let loop: EventLoop
    private let ownsLoop: Bool
    private let attached = Mutex<(kind: Kind, events: WorkerEvents<Kind>)?>(nil)
    private let workers = Mutex<[WorkerID: ProcessWorker<Kind>]>([:])
    /// Workers told to stop whose process has not been reaped yet.
    private let exiting = Mutex<[ObjectIdentifier: ProcessWorker<Kind>]>([:])

    /// Creates a backend on `loop`, or on a loop of its own when nil (shut down with it).
    ///
    /// Sets SIGPIPE to ignored for the process: a worker that dies leaves a pipe whose next
    /// write would otherwise kill the master; with it ignored the write fails with EPIPE and
    /// the death is reported through the exit status.
    public init(loop: EventLoop? = nil, configuration: Configuration = .init()) throws(TaskQueueError) {
        signal(SIGPIPE, SIG_IGN)
        self.configuration = configuration
        if let loop {
            self.loop = loop
            ownsLoop = false
        } else {
            do {
                self.loop = try EventLoop(name: "spindle-procworkers")
            } catch {
                throw .invalidConfiguration("could not start an event loop for process workers: \(error)")
            }
            ownsLoop = true
        }
    }

    /// This process's executable, read from `/proc/self/exe`.
    public static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments.first ?? "" }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func attach(kind: Kind, events: WorkerEvents<Kind>) async throws(TaskQueueError) {
        guard access(configuration.executable, X_OK) == 0 else {
            throw .invalidConfiguration("worker executable \(configuration.executable) is not executable")
        }
        attached.withLock { $0 = (kind, events) }
    }

    /// Process ids of the live workers (for tests and operators).
    public var workerPIDs: [WorkerID: Int32] {
        workers.withLock { w in w.compactMapValues { $0.pid } }
    }

    /// Process ids of every child not yet reaped, live or exiting.
    public var unreapedPIDs: [Int32] {
        let live = workers.withLock { $0.values.compactMap(\.pid) }
        let leaving = exiting.withLock { $0.values.compactMap(\.pid) }
        return live + leaving
    }

    public func start(_ id: WorkerID) {
        guard let (kind, events) = attached.withLock({ $0 }) else { return }
        let worker = ProcessWorker<Kind>(id: id, events: events, maxFrameSize: configuration.maxFrameSize,
                                         logger: configuration.logger)
        workers.withLock { $0[id] = worker }
        var options = ProcessOptions(executable: configuration.executable, arguments: configuration.arguments)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in kind.workerEnvironment { env[k] = v }
        for (k, v) in configuration.environment { env[k] = v }
        env[ProcessWorkerMain.environmentKey] = Kind.name
        options.environment = env
        options.stdin = .pipe
        options.stdout = .pipe
        options.stderr = configuration.inheritStderr ? .inherit : .ignore
        options.parentDeathSignal = SIGKILL
        let loop = self.loop
        let timeout = configuration.handshakeTimeout
        Task {
            let child: ChildProcess
            do {
                child = try await ChildProcess.spawn(on: loop, options)
            } catch {
                worker.spawnFailed("\(error)")
                self.forget(worker)
                return
            }
            worker.spawned(child, loop: loop, handshakeTimeout: timeout) { [weak self] in
                self?.forget(worker)
            }
        }
    }

    public func dispatch(_ id: WorkerID, _ batch: [Assignment<Kind>]) {
        workers.withLock { $0[id] }?.send(batch)
    }

    public func withdraw(_ id: WorkerID, seqs: [UInt64]) {
        workers.withLock { $0[id] }?.withdraw(seqs)
    }

    public func kill(_ id: WorkerID) {
        guard let worker = workers.withLock({ $0.removeValue(forKey: id) }) else { return }
        exiting.withLock { $0[ObjectIdentifier(worker)] = worker }
        worker.terminate(graceful: false)
    }

    public func retire(_ id: WorkerID) {
        guard let worker = workers.withLock({ $0.removeValue(forKey: id) }) else { return }
        exiting.withLock { $0[ObjectIdentifier(worker)] = worker }
        worker.terminate(graceful: true)
    }

    public func broadcast(_ feedback: Kind.Feedback, to ids: [WorkerID]) throws(MarshalError) {
        let body: Data
        do {
            body = try JSONEncoder().encode(feedback)
        } catch {
            throw MarshalError(direction: .encodeBroadcast, kind: Kind.name, worker: nil, detail: "\(error)")
        }
        guard body.count + 1 <= configuration.maxFrameSize else {
            throw MarshalError(direction: .encodeBroadcast, kind: Kind.name, worker: nil,
                               detail: "the broadcast of \(body.count) bytes does not fit the frame limit of \(configuration.maxFrameSize) bytes")
        }
        let frame = WorkerWire.frame(.broadcast, body: body)
        let targets = workers.withLock { w in ids.compactMap { w[$0] } }
        for worker in targets { worker.sendRaw(frame) }
    }

    /// Stops every worker (retired ones get `exitTimeout` to leave, then SIGKILL), waits
    /// until each child is reaped, and shuts the loop down if the backend owns it.
    public func shutdown() async {
        let live = workers.withLock { w -> [ProcessWorker<Kind>] in
            let all = Array(w.values)
            w = [:]
            return all
        }
        for worker in live {
            exiting.withLock { $0[ObjectIdentifier(worker)] = worker }
            worker.terminate(graceful: true)
        }
        let all = exiting.withLock { Array($0.values) }
        let deadline = SystemClock().now() + configuration.exitTimeout
        for worker in all {
            await worker.waitForExit(until: deadline)
        }
        exiting.withLock { $0 = [:] }
        attached.withLock { $0 = nil }
        if ownsLoop { await loop.shutdown() }
    }

    private func forget(_ worker: ProcessWorker<Kind>) {
        workers.withLock { w in
            if w[worker.id] === worker { w[worker.id] = nil }
        }
        exiting.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(worker)) }
    }
}
