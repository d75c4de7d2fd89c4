import SpindleKernel
import SpindleSupport
import Synchronization

/// A set of persistent lane threads that runs tasklets, reused across launches.
///
/// Lane threads start on the first launch that needs them and then stay: a pool that has
/// run a 4-lane tasklet keeps 3 lane threads (the caller's thread is lane 0). Idle threads
/// spin for the wait policy's budget and then park, so an idle pool burns no CPU.
///
/// Launches on one pool **queue**, first come first served: each holds all of the pool's lanes
/// from its start to its end, and concurrent callers wait (spinning, then parked, or suspended
/// for the async entry) in the order they came. A launch from inside a lane of the same pool
/// would wait for itself, so it runs **inline** instead: its lanes one after another on the
/// calling lane's thread (a barrier among them cannot complete there and fails the launch
/// with `.invalidConfiguration`). A scratch factory that launches on the pool it is preparing
/// gets `.invalidConfiguration`.
///
/// `shared` lives for the whole process. Pools you create own threads: call `shutdown()`.
public final class TaskletPool: Sendable {
    /// Options of a pool.
    public struct Configuration: Sendable {
        /// The largest `workers` a launch may ask for (lane threads = maxLanes - 1 at most).
        public var maxLanes: Int
        /// How waiting lanes spin before parking. Defaults to `SPINDLE_TASKLET_WAIT_POLICY`,
        /// else `WaitPolicy.default`.
        public var waitPolicy: WaitPolicy
        /// The clock that times lanes in `TaskletResult` (never used for spinning).
        public var clock: any SpindleClock
        /// The name every thread of the pool carries (`top -H`, `ps -L`, debuggers); Linux
        /// shows the first 15 bytes.
        public var threadName: String

        public init(maxLanes: Int = 64, waitPolicy: WaitPolicy = .fromEnvironment(),
                    clock: any SpindleClock = SystemClock(), threadName: String = "spindle-tasklet") {
            self.maxLanes = maxLanes
            self.waitPolicy = waitPolicy
            self.clock = clock
            self.threadName = threadName
        }
    }

    /// The process-wide pool that `Tasklet.launch` uses by default.
    public static let shared = TaskletPool()

    /// The options this pool was made with.
    public let configuration: Configuration
    @usableFromInline let core: PoolCore

    /// Creates a pool; no thread starts until a launch needs one.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        core = PoolCore(configuration: configuration)
    }

    deinit { core.abandon() }

    /// Threads this pool has started so far: lane threads, plus one runner thread once an
    /// async launch was made. It stays flat across launches of the same or fewer lanes.
    public var threadCount: Int { core.threadCount }

    /// Runs a tasklet on this pool, with the calling thread as lane 0; see `Tasklet.launch`.
    @inlinable
    public func launch<Shared: Sendable, Scratch: Sendable>(
        workers: Int = Tasklet.defaultLanes, shared: Shared, scratch: (Int) -> Scratch, fuel: FuelPolicy = .unlimited,
        cancellation: TaskletCancellation? = nil,
        _ coordinator: (CoordinatorContext<Shared, Scratch>) throws -> Void
    ) throws(TaskletError) -> TaskletResult {
        try core.launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel,
                        cancellation: cancellation, coordinator: coordinator)
    }

    /// Runs a tasklet with lane 0 on the pool's runner thread and suspends the caller until
    /// it ends; cancelling the awaiting task cancels the tasklet. A launch cancelled while it
    /// still waits for the pool never runs: it fails with `.cancelled` at once.
    public func launch<Shared: Sendable, Scratch: Sendable>(
        workers: Int = Tasklet.defaultLanes, shared: Shared, scratch: @escaping @Sendable (Int) -> Scratch,
        fuel: FuelPolicy = .unlimited,
        _ coordinator: @escaping @Sendable (CoordinatorContext<Shared, Scratch>) throws -> Void
    ) async throws(TaskletError) -> TaskletResult {
        let cancellation = TaskletCancellation()
        let core = self.core
        let pending = PendingLaunch<TaskletResult>()
        let outcome: Result<TaskletResult, TaskletError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<TaskletResult, TaskletError>, Never>) in
                pending.wait(continuation)
                do throws(TaskletError) {
                    try core.enqueueAsync {
                        guard pending.start() else { return }  // answered `.cancelled` while queued
                        pending.finish(Result { () throws(TaskletError) -> TaskletResult in
                            try core.launch(workers: workers, shared: shared, scratch: scratch, fuel: fuel,
                                            cancellation: cancellation, coordinator: coordinator)
                        })
                    }
                } catch {
                    pending.finish(.failure(error))
                }
            }
        } onCancel: {
            cancellation.cancel()
            pending.cancelIfQueued()
        }
        return try outcome.get()
    }

    /// Stops the pool: refuses new launches, lets a running launch finish, fails queued async
    /// launches with `.invalidConfiguration`, and joins every thread the pool started.
    ///
    /// The blocking part runs on a helper thread, so the awaiting task never blocks a
    /// cooperative thread for long.
    public func shutdown() async {
        let core = self.core
        let helper = ThreadBox()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            do {
                helper.thread = try SpindleThread.startPoolThread(name: "spindle-stop") {
                    core.shutdownBlocking()
                    continuation.resume()
                }
            } catch {
                core.shutdownBlocking()
                continuation.resume()
            }
        }
        // The helper resumed us as its last act; joining it takes microseconds.
        helper.thread?.join()
    }
}

/// An async launch waiting for the pool's runner: answered once, either by the runner (which
/// runs it) or by cancellation while it is still queued (then it never runs).
final class PendingLaunch<Value: Sendable>: Sendable {
    private enum Phase { case queued, running, done }
    private struct State {
        var phase = Phase.queued
        var result: Result<Value, TaskletError>?
        var continuation: CheckedContinuation<Result<Value, TaskletError>, Never>?
    }
    private let state = Mutex(State())

    /// Registers the waiting caller (answered at once if the outcome is known).
    func wait(_ continuation: CheckedContinuation<Result<Value, TaskletError>, Never>) {
        let ready = state.withLock { s -> Result<Value, TaskletError>? in
            if let r = s.result { return r }
            s.continuation = continuation
            return nil
        }
        if let ready { continuation.resume(returning: ready) }
    }

    /// The runner takes the launch; false when it was already answered (cancelled).
    func start() -> Bool {
        state.withLock { s in
            guard s.phase == .queued else { return false }
            s.phase = .running
            return true
        }
    }

    func finish(_ result: Result<Value, TaskletError>) {
        let c = state.withLock { s -> CheckedContinuation<Result<Value, TaskletError>, Never>? in
            guard s.phase != .done else { return nil }
            s.phase = .done
            s.result = result
            defer { s.continuation = nil }
            return s.continuation
        }
        c?.resume(returning: result)
    }

    /// Answers `.cancelled` if the runner has not taken the launch yet.
    func cancelIfQueued() {
        let c = state.withLock { s -> CheckedContinuation<Result<Value, TaskletError>, Never>? in
            guard s.phase == .queued else { return nil }
            s.phase = .done
            s.result = .failure(.cancelled)
            defer { s.continuation = nil }
            return s.continuation
        }
        c?.resume(returning: .failure(.cancelled))
    }
}

/// Carries the shutdown helper's handle from the continuation body back to the caller.
private final class ThreadBox: @unchecked Sendable {
    // @unchecked Sendable: written before the continuation resumes, read after it resumed.
    var thread: SpindleThread?
}
