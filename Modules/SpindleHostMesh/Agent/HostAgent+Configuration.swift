import Logging
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
        /// How many of a proc's last stderr lines a `stopped` state carries.
        public var stderrTailLines = 20
        /// Passed to procs as `SPINDLE_KEY_FILE` so they can authenticate when they connect back.
        public var procKeyFile: String? = nil
        /// Whether procs inherit the agent's stdout (otherwise it is discarded).
        public var forwardProcStdout = true
        /// Stop the procs a client spawned when its connection closes (no orphans behind a
        /// vanished client).
        public var stopProcsWhenClientLeaves = true
        /// Extra check on pushed config snapshots: a reason to reject, or nil to accept.
        public var configValidator: (@Sendable (ConfigSnapshot) -> String?)? = nil
        public var logger = Logger(label: "spindle.host-agent")
        public var clock: any SpindleClock = SystemClock()

        public init() {}
    }
}
