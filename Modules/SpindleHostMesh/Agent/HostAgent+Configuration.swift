import Logging
import Metrics
import SpindleKernel

extension HostAgent {
    /// How a host agent listens, what it may start and how it stops procs.
    public struct Configuration: Sendable {
        /// Where the agent listens for clients and for its procs.
        public var listenAddress: Address = .tcp(host: "127.0.0.1", port: 0)
        /// Set when the transport authenticates peers with a cluster key. Listening on
        /// anything but loopback requires it.
        public var transportAuthenticates = false
        /// The programs procs may run (paths or names in `PATH`, compared by real path);
        /// nil allows only the agent's own executable.
        public var allowedPrograms: [String]? = nil
        /// Time between SIGTERM and SIGKILL when stopping a proc.
        public var stopGrace: Duration = .seconds(5)
        /// How many of a proc's last stderr lines its final state carries.
        public var stderrTailLines = 20
        /// Passed to procs as `SPINDLE_KEY_FILE` so they can authenticate when they connect back.
        public var procKeyFile: String? = nil
        /// Also write every proc's output, rank-prefixed, to the agent's own stdout (it always
        /// streams to the owning client).
        public var forwardProcStdout = false
        /// Stop the procs a client session spawned when the session ends: the client closed
        /// it, or was declared lost by the liveness bound (no orphans behind a vanished
        /// client). Detached proc meshes are not stopped.
        public var stopProcsWhenClientLeaves = true
        /// Extra check on pushed config snapshots: a reason to reject, or nil to accept.
        public var configValidator: (@Sendable (ConfigSnapshot) -> String?)? = nil
        /// The `spindle-keeper` executable every proc is started under (its process group
        /// keeper, see docs/hostmesh.md). nil: `SPINDLE_KEEPER`, then next to this process's
        /// executable (or up to three directories above it), then `PATH`.
        public var keeperPath: String? = nil
        /// Caps, with typed refusals, and the retention of finished procs.
        public var limits = Limits()
        /// The liveness bound and heartbeat of every control link (clients and procs).
        public var livenessBound: Duration = .seconds(5)
        public var heartbeatInterval: Duration = .seconds(1)
        /// Where the `spindle_mesh_*` metrics go (nil: the global `MetricsSystem`).
        public var metricsFactory: (any MetricsFactory)? = nil
        public var logger = Logger(label: "spindle.host-agent")
        public var clock: any SpindleClock = SystemClock()

        public init() {}
    }

    /// What an agent accepts, and how long it remembers finished procs.
    public struct Limits: Sendable, Hashable {
        /// Live procs one client session may own on this agent.
        public var maxProcsPerClient = 512
        /// Live procs on this agent, every client and the detached meshes together.
        public var maxProcsPerAgent = 2048
        /// Procs in one spawn request.
        public var maxProcsPerRequest = 1024
        /// Bytes of one proc's program, arguments and environment (`BootstrapCommand.byteCount`).
        public var maxBootstrapBytes = 1 << 20
        /// How long a finished proc's last state (and retained output) stays queryable before
        /// the agent forgets it.
        public var finishedRetention: Duration = .seconds(300)
        /// Output lines kept per proc for `readLogs` (`spindle mesh logs`).
        public var retainedLogLines = 1000
        /// Output pushes a client may have unacknowledged before the agent drops (and counts)
        /// further output lines for it.
        public var maxUnacknowledgedOutput = 4096
        /// Longest output line; longer lines are cut and marked with `…`.
        public var maxLineBytes = 16 << 10

        public init() {}
    }
}

/// The caps an agent checks before it starts anything; no I/O.
public enum SpawnAdmission {
    /// Why `request` must be refused, or nil when it fits.
    /// - Parameters:
    ///   - liveForOwner: live procs the requester already owns here (the cluster's, for a
    ///     detached request).
    ///   - liveTotal: live procs on the agent.
    public static func check(_ request: SpawnRequest, liveForOwner: Int, liveTotal: Int,
                             limits: HostAgent.Limits) -> SpawnRefusal? {
        let n = request.procs.count
        if n > limits.maxProcsPerRequest {
            return .limitExceeded(.procsPerRequest(requested: n, limit: limits.maxProcsPerRequest))
        }
        if liveForOwner + n > limits.maxProcsPerClient {
            return .limitExceeded(.procsPerClient(requested: n, live: liveForOwner, limit: limits.maxProcsPerClient))
        }
        if liveTotal + n > limits.maxProcsPerAgent {
            return .limitExceeded(.procsPerAgent(requested: n, live: liveTotal, limit: limits.maxProcsPerAgent))
        }
        for p in request.procs {
            let bytes = p.command.byteCount
            if bytes > limits.maxBootstrapBytes {
                return .limitExceeded(.bootstrapBytes(rank: p.rank, bytes: bytes, limit: limits.maxBootstrapBytes))
            }
        }
        return nil
    }
}
