import Synchronization

/// The embedded default transport: connections inside one process, `inproc://name` addresses.
///
/// Envelopes are passed as values (their payload arrays are shared, never copied or encoded).
/// Each connection direction is a FIFO with a serial drain (`InProcessInbox`): handler calls
/// for one connection never overlap and keep send order.
///
/// **Where handlers run** (`Configuration.delivery`):
/// - `.asynchronous` (default): a drain runs as a Swift task on the global executor, so a
///   handler never runs on the sender's thread and may call `send` or take the sender's locks
///   freely.
/// - `.inline`: the sending thread delivers directly (or, if a drain for that connection is
///   already running, leaves the envelope to it). Fastest and fully deterministic, for tests
///   driven by a `ManualClock`; handlers must not take locks their senders hold while sending.
///
/// Faults for tests are injected through `faults` (drop, delay, duplicate, reorder across
/// connections, partition, disconnect); every random choice comes from `Configuration.seed`.
public final class InProcessTransport: Transport {
    /// Options of an in-process transport.
    public struct Configuration: Sendable {
        public enum Delivery: Sendable, Equatable {
            case asynchronous
            case inline
        }
        /// How delayed envelopes are released.
        public enum DelayRelease: Sendable, Equatable {
            /// A background task sleeps until the earliest delay ends (use with `SystemClock`).
            case automatic
            /// Only `FaultInjector.releaseDue()` releases them (use with `ManualClock`).
            case manual
        }
        public var delivery: Delivery
        public var delayRelease: DelayRelease
        /// Timeline for delay faults.
        public var clock: any SpindleClock
        /// Seed for every random fault decision.
        public var seed: UInt64
        /// Envelopes waiting for delivery above which `waitUntilWritable` suspends.
        public var highWatermark: Int
        /// ... and below which it resumes.
        public var lowWatermark: Int

        public init(delivery: Delivery = .asynchronous, delayRelease: DelayRelease = .automatic,
                    clock: any SpindleClock = SystemClock(), seed: UInt64 = 0x5EED,
                    highWatermark: Int = 65_536, lowWatermark: Int = 16_384) {
            self.delivery = delivery
            self.delayRelease = delayRelease
            self.clock = clock
            self.seed = seed
            self.highWatermark = max(1, highWatermark)
            self.lowWatermark = min(max(0, lowWatermark), max(1, highWatermark))
        }
    }

    public let configuration: Configuration
    let fabric: InProcessFabric

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        fabric = InProcessFabric(configuration: configuration)
    }

    /// The fault injection controls of this transport.
    public var faults: FaultInjector { FaultInjector(fabric: fabric) }

    public func listen(on address: Address,
                       accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        try fabric.listen(on: address, accept: accept)
    }

    /// Connects as an anonymous endpoint (named `client-<n>`).
    public func connect(to address: Address) async throws(TransportError) -> any TransportConnection {
        try fabric.connect(to: address, from: nil)
    }

    /// Connects as the endpoint `name` (the connection's `localAddress` is `inproc://name`),
    /// so partitions and disconnects between named endpoints apply to it.
    public func connect(to address: Address, from name: String) async throws(TransportError) -> any TransportConnection {
        try fabric.connect(to: address, from: name)
    }

    /// Names currently listened on.
    public var listenerNames: [String] { fabric.state.withLock { $0.listeners.keys.sorted() } }

    /// Open connections (each counted once, not per end).
    public var connectionCount: Int { fabric.state.withLock { $0.connections.count } }

    /// Closes every listener and connection (handlers get `.transportShutdown`), stops the delay
    /// task and waits until every delivery task has finished.
    public func shutdown() async {
        await fabric.shutdown()
    }
}

/// Controls the faults an `InProcessTransport` injects. Endpoint names are the names in
/// `inproc://name`: a listener's name, or the `from` name of `connect(to:from:)`.
public struct FaultInjector: Sendable {
    let fabric: InProcessFabric

    /// Replaces the standing fault rates.
    public func setPlan(_ plan: FaultPlan) { fabric.updateFaults { $0.plan = plan } }

    /// Drops the next `n` envelopes sent on any connection.
    public func dropNext(_ n: Int) { fabric.updateFaults { $0.dropNext += max(0, n) } }

    /// Delivers each of the next `n` envelopes twice.
    public func duplicateNext(_ n: Int) { fabric.updateFaults { $0.duplicateNext += max(0, n) } }

    /// Holds each of the next `n` envelopes back by `delay` (FIFO per connection is kept).
    public func delayNext(_ n: Int, by delay: Duration) {
        fabric.updateFaults { $0.delayNext += Array(repeating: delay, count: max(0, n)) }
    }

    /// Cuts `a` and `b` apart: envelopes between them are dropped and connects fail as
    /// unreachable until `heal`. Existing connections stay open (a silent partition).
    public func partition(_ a: String, _ b: String) { fabric.updateFaults { $0.partitions.insert(EndpointPair(a, b)) } }

    /// Cuts `name` off from every other endpoint.
    public func isolate(_ name: String) { fabric.updateFaults { $0.isolated.insert(name) } }

    /// Removes the partition between `a` and `b` (and any isolation of either).
    public func heal(_ a: String, _ b: String) {
        fabric.updateFaults {
            $0.partitions.remove(EndpointPair(a, b))
            $0.isolated.remove(a)
            $0.isolated.remove(b)
        }
    }

    /// Removes every partition and isolation.
    public func healAll() { fabric.updateFaults { $0.partitions = []; $0.isolated = [] } }

    /// Breaks every open connection between `a` and `b` (or every connection of `a` when `b`
    /// is nil): undelivered envelopes are lost and both handlers get
    /// `.transportError("fault injection: disconnected")`. Returns how many were broken.
    @discardableResult
    public func disconnect(_ a: String, _ b: String? = nil) -> Int { fabric.disconnect(a, b) }

    /// Releases held-back envelopes whose delay has passed on the transport's clock; returns
    /// how many were released.
    @discardableResult
    public func releaseDue() -> Int { fabric.releaseDue() }

    /// Counts of the faults injected so far.
    public var stats: FaultStats { fabric.state.withLock { $0.faults.stats } }

    /// Turns every fault off (plan, pending next-N counters, partitions).
    public func reset() {
        fabric.updateFaults { f in
            f.plan = .none; f.dropNext = 0; f.duplicateNext = 0; f.delayNext = []
            f.partitions = []; f.isolated = []
        }
    }
}

/// A listener of the in-process transport.
final class InProcessListener: TransportListener {
    let address: Address
    let name: String
    private weak let fabric: InProcessFabric?

    init(address: Address, name: String, fabric: InProcessFabric) {
        self.address = address
        self.name = name
        self.fabric = fabric
    }

    func close() { fabric?.unlisten(name) }
}
