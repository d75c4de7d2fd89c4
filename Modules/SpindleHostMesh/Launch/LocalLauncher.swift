import Logging
import SpindleEventLoop
import SpindleKernel

/// Runs host agents as child processes of this one: `spindle host-agent --listen … --key-file
/// … --exit-on-stdin-close`, one per "host". For tests, the demo and single-machine clusters.
/// The agents stop with `down()`, and — since each exits when its standard input closes —
/// when this process dies.
public final class LocalLauncher: HostLauncher {
    public struct Configuration: Sendable {
        /// The `spindle` executable.
        public var spindleExecutable: String
        /// How many agents.
        public var count: Int
        /// Where each listens (port 0: any free port); loopback by default.
        public var listenAddress: Address = .tcp(host: "127.0.0.1", port: 0)
        /// The cluster key file (required beyond loopback).
        public var keyFile: String?
        /// Programs procs may run (`--allow`); empty: the agent's default.
        public var allowedPrograms: [String] = []
        /// Extra arguments for `spindle host-agent`.
        public var extraArguments: [String] = []
        /// How long an agent has to print its listening line.
        public var startTimeout: Duration = .seconds(30)
        /// Between closing an agent's stdin and SIGTERM, and between SIGTERM and SIGKILL.
        public var stopGrace: Duration = .seconds(5)
        /// Where the agents' stderr lines go (with `host` metadata).
        public var logger = Logger(label: "spindle.launcher.local")

        public init(spindleExecutable: String, count: Int) {
            self.spindleExecutable = spindleExecutable
            self.count = count
        }
    }

    public let configuration: Configuration
    private let agents: CommandLauncher

    /// - Parameter loop: the loop the agent processes are watched on (owned by the caller).
    public init(on loop: EventLoop, configuration: Configuration) {
        self.configuration = configuration
        var arguments = ["host-agent", "--listen", "\(configuration.listenAddress)", "--exit-on-stdin-close"]
        if let key = configuration.keyFile { arguments += ["--key-file", key] }
        if !configuration.allowedPrograms.isEmpty { arguments += ["--allow"] + configuration.allowedPrograms }
        arguments += configuration.extraArguments
        var c = CommandLauncher.Configuration(commands: (0..<max(0, configuration.count)).map {
            (host: "local-\($0)", command: [configuration.spindleExecutable] + arguments)
        })
        c.startTimeout = configuration.startTimeout
        c.stopGrace = configuration.stopGrace
        c.logger = configuration.logger
        agents = CommandLauncher(on: loop, configuration: c)
    }

    public func up() async throws(LaunchError) -> [Address] { try await agents.up() }

    public func down() async { await agents.down() }

    /// The agents' process ids (for tests and operators).
    public var pids: [Int32] { agents.pids }
}
