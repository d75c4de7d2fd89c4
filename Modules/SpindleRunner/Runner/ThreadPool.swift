import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed set of threads running submitted jobs in FIFO order; idle threads spin briefly
/// (a reply is often due within microseconds) and then park.
///
/// `@unchecked Sendable`: `queue`, `head` and `stopping` are only touched with `lock` held;
/// `threads` is written in `init` and read in `shutdown`, which runs once.
final class ThreadPool: @unchecked Sendable {
    typealias Job = @Sendable () -> Void

    private let lock = ConditionLock()
    private var queue: [Job] = []
    private var head = 0
    private var stopping = false
    private let queued = Atomic<Int>(0)
    private let spinIterations: Int
    private var threads: [pthread_t] = []
    private let stopped = Atomic<Bool>(false)

    /// Starts `count` threads named `name`.
    init(threads count: Int, name: String, spinIterations: Int) {
        self.spinIterations = spinIterations
        for i in 0..<max(1, count) {
            let box = Unmanaged.passRetained(ThreadStart(pool: self, name: "\(name)-\(i)"))
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
                start.run()
                return nil
            }, box.toOpaque())
            precondition(rc == 0, "pthread_create failed (\(rc)): cannot start runner threads")
            threads.append(thread)
        }
    }

    var threadCount: Int { threads.count }

    /// Queues one job.
    /// - Returns: false (and drops the job) once the pool is stopping.
    @discardableResult
    func submit(_ job: @escaping Job) -> Bool {
        lock.lock()
        guard !stopping else {
            lock.unlock()
            return false
        }
        queue.append(job)
        queued.add(1, ordering: .releasing)
        lock.signal()
        lock.unlock()
        return true
    }

    /// Queues several jobs with one lock round.
    func submit(contentsOf jobs: [Job]) {
        guard !jobs.isEmpty else { return }
        lock.lock()
        queue.append(contentsOf: jobs)
        queued.add(jobs.count, ordering: .releasing)
        if jobs.count == 1 { lock.signal() } else { lock.broadcast() }
        lock.unlock()
    }

    /// Stops the threads once the queue is empty and joins them. Idempotent.
    func shutdown() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        for t in threads { pthread_join(t, nil) }
    }

    /// Asks the threads to exit once the queue is empty without waiting for them (they are
    /// detached). For an owner's `deinit`, which must not block or join its own thread.
    func requestStop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        for t in threads { pthread_detach(t) }
    }

    fileprivate func workerLoop() {
        while true {
            var spins = 0
            while queued.load(ordering: .acquiring) == 0 && spins < spinIterations { spins += 1 }
            lock.lock()
            while head == queue.count && !stopping { lock.wait() }
            if head == queue.count {
                lock.unlock()
                return
            }
            let job = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            queued.subtract(1, ordering: .relaxed)
            lock.unlock()
            job()
        }
    }

    private final class ThreadStart {
        let pool: ThreadPool
        let name: String
        init(pool: ThreadPool, name: String) {
            self.pool = pool
            self.name = name
        }
        func run() {
            pool.workerLoop()
        }
    }
}
