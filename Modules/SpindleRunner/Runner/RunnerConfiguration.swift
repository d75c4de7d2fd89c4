import Logging

/// Options of a `DistributedRunner`.
public struct RunnerConfiguration: Sendable {
    /// A shard that has not finished a phase this long after the phase began fails the tick,
    /// named in the error. Real: the runner stops waiting and reports; the shard's late result
    /// is discarded.
    public var phaseTimeout: Duration = .seconds(30)
    /// Whether nodes referenced by cross-shard edges are resolved into ghost caches.
    public var ghostResolution: Bool = true
    /// Ghost nodes each shard's cache holds (least recently used evicted first).
    public var ghostCacheCapacity: Int = 1024
    /// Threads that run in-process shards' phases (at most one per shard is used).
    public var parallelism: Int = RunnerConfiguration.defaultParallelism
    /// How long an idle runner thread spins (in loop iterations) before it parks; spinning
    /// saves a wake-up when the next phase is due within microseconds.
    public var spinIterations: Int = 2_000
    public var logger = Logger(label: "spindle.runner")

    public init(phaseTimeout: Duration = .seconds(30), ghostResolution: Bool = true,
                ghostCacheCapacity: Int = 1024,
                parallelism: Int = RunnerConfiguration.defaultParallelism) {
        self.phaseTimeout = phaseTimeout
        self.ghostResolution = ghostResolution
        self.ghostCacheCapacity = ghostCacheCapacity
        self.parallelism = parallelism
    }

    /// The number of online processors.
    public static var defaultParallelism: Int { max(1, Int(onlineProcessors())) }

    func validate() throws(RunnerError) {
        guard phaseTimeout > .zero else { throw .invalidConfiguration("phaseTimeout must be positive, got \(phaseTimeout)") }
        guard parallelism >= 1 else { throw .invalidConfiguration("parallelism must be at least 1, got \(parallelism)") }
        guard ghostCacheCapacity >= 1 else {
            throw .invalidConfiguration("ghostCacheCapacity must be at least 1, got \(ghostCacheCapacity)")
        }
        guard spinIterations >= 0 else { throw .invalidConfiguration("spinIterations must not be negative") }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func onlineProcessors() -> Int { sysconf(Int32(_SC_NPROCESSORS_ONLN)) }
