import DequeModule
@_spi(SpindleTransportInternals) import SpindleKernel
import SpindleSupport
import Synchronization

/// A task executor whose jobs run only when a test calls `runOne()`, on the test's thread:
/// with every task of a simulation on it, the order in which they run depends on nothing
/// but the order in which they became ready.
final class ManualExecutor: TaskExecutor {
    private let jobs = Mutex(Deque<UnownedJob>())

    func enqueue(_ job: consuming ExecutorJob) {
        let j = UnownedJob(job)
        jobs.withLock { $0.append(j) }
    }

    /// Runs the oldest ready job; false when none is ready.
    func runOne() -> Bool {
        guard let job = jobs.withLock({ $0.popFirst() }) else { return false }
        job.runSynchronously(on: asUnownedTaskExecutor())
        return true
    }

    var hasWork: Bool { jobs.withLock { !$0.isEmpty } }
}

/// The in-process transport seen by one simulated node: its connections carry the node's
/// name (so `faults.isolate(name)` cuts the node off in both directions) and go through
/// `SimNetwork`'s delays.
final class SimTransport: Transport {
    let name: String
    let network: SimNetwork

    init(name: String, network: SimNetwork) {
        self.name = name
        self.network = network
    }

    func listen(on address: Address,
                accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        let network = self.network
        return try await network.inner.listen(on: address) { conn in accept(network.wrap(conn)) }
    }

    func connect(to address: Address) async throws(TransportError) -> any TransportConnection {
        network.wrap(try await network.inner.connect(to: address, from: name))
    }

    func shutdown() async {}
}

/// Drop, duplication and partitions come from the in-process transport's fault injector
/// (seeded, decided in send order). Delays are added here instead: the kernel releases the
/// delayed envelopes of different connections in an unspecified order, while this releases
/// them connection by connection in creation order, each connection FIFO — so a simulation
/// replays exactly.
final class SimNetwork: Sendable {
    let inner: InProcessTransport
    let clock: ManualClock
    private struct State {
        var rng: SplitMix64
        var delayProbability: Double
        var delayRange: ClosedRange<Duration>
        var connections: [DelayingConnection] = []
        var delayed = 0
    }
    private let state: Mutex<State>

    init(inner: InProcessTransport, clock: ManualClock, seed: UInt64, delayProbability: Double,
         delayRange: ClosedRange<Duration>) {
        self.inner = inner
        self.clock = clock
        state = Mutex(State(rng: SplitMix64(seed: seed), delayProbability: delayProbability, delayRange: delayRange))
    }

    func transport(for name: String) -> SimTransport { SimTransport(name: name, network: self) }

    func wrap(_ c: any TransportConnection) -> DelayingConnection {
        let d = DelayingConnection(inner: c, network: self)
        state.withLock { $0.connections.append(d) }
        return d
    }

    /// The delay for the next envelope sent (nil: none), drawn in send order.
    func drawDelay() -> Duration? {
        state.withLock { s in
            let roll = Double(s.rng.next() >> 11) * 0x1.0p-53
            guard roll < s.delayProbability else { return nil }
            let lo = s.delayRange.lowerBound.nanosecondsClamped, hi = s.delayRange.upperBound.nanosecondsClamped
            s.delayed += 1
            return .nanoseconds(lo + Int64(s.rng.next() % UInt64(max(1, hi - lo))))
        }
    }

    var delayedCount: Int { state.withLock { $0.delayed } }

    /// Hands on every delayed envelope that is due, connection by connection in creation order.
    func releaseDue() {
        let connections = state.withLock { $0.connections }
        let now = clock.now()
        for c in connections { c.releaseDue(now: now) }
    }
}

/// A connection whose envelopes may be held back for a while; later envelopes wait behind a
/// held one, so the connection stays FIFO.
final class DelayingConnection: TransportConnection {
    let inner: any TransportConnection
    private let network: SimNetwork
    private struct State {
        var held: Deque<(due: MonotonicInstant, envelope: Envelope)> = []
        var releasing = false
    }
    private let state = Mutex(State())

    init(inner: any TransportConnection, network: SimNetwork) {
        self.inner = inner
        self.network = network
    }

    var localAddress: Address { inner.localAddress }
    var remoteAddress: Address { inner.remoteAddress }
    var maximumFrameSize: Int { inner.maximumFrameSize }
    var peerNode: NodeID? { inner.peerNode }

    func send(_ envelope: Envelope) throws(TransportError) {
        let delay = network.drawDelay()
        let now = network.clock.now()
        let passThrough = state.withLock { s -> Bool in
            if s.held.isEmpty && !s.releasing && delay == nil { return true }
            s.held.append((now + (delay ?? .zero), envelope))
            return false
        }
        if passThrough { try inner.send(envelope) }
    }

    func send(contentsOf envelopes: [Envelope]) throws(TransportError) {
        for e in envelopes { try send(e) }
    }

    func waitUntilWritable() async throws(TransportError) { try await inner.waitUntilWritable() }

    func start(_ handler: ConnectionHandler) { inner.start(handler) }

    func close() {
        state.withLock { $0.held.removeAll() }
        inner.close()
    }

    /// Sends the held envelopes whose time has come (and any queued behind them meanwhile).
    func releaseDue(now: MonotonicInstant) {
        let begin = state.withLock { s -> Bool in
            guard !s.releasing, let first = s.held.first, first.due <= now else { return false }
            s.releasing = true
            return true
        }
        guard begin else { return }
        while let e = state.withLock({ s -> Envelope? in
            guard let first = s.held.first, first.due <= now else {
                s.releasing = false
                return nil
            }
            return s.held.removeFirst().envelope
        }) {
            try? inner.send(e)
        }
    }
}

/// A task executor with a thread of its own: a long simulation driven from it does not hold
/// one of the cooperative pool's few threads (on 2 cores, 2) while the rest of the suite
/// runs in parallel.
final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `jobs` and `stopping` are only touched under `lock`; `thread` is
    // written once in init and read by `shutdown`, which the owner calls once.
    private let lock = ConditionLock()
    private var jobs = Deque<UnownedJob>()
    private var stopping = false
    private var thread: SpindleThread?

    init() throws {
        thread = try SpindleThread.start(name: "sim-executor") { [self] in loop() }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let j = UnownedJob(job)
        lock.withLock {
            jobs.append(j)
            lock.signal()
        }
    }

    private func loop() {
        while true {
            let job: UnownedJob? = lock.withLock {
                while jobs.isEmpty && !stopping { lock.wait() }
                return jobs.popFirst()
            }
            guard let job else { return }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    /// Ends the thread once the queued jobs have run (call from outside its tasks).
    func shutdown() {
        lock.withLock {
            stopping = true
            lock.signal()
        }
        thread?.join()
    }
}
