import Logging
import SpindleEventLoop
import SpindleKernel
import Synchronization

/// Starts one agent per host with a command line of the caller's making: the command must
/// end up running `spindle host-agent … --exit-on-stdin-close` (which prints its listening
/// line and exits when its standard input closes). How a scheduler's launcher plugs in —
/// `srun -w node1 spindle host-agent …`, `ip netns exec spn1 spindle host-agent …`,
/// `kubectl exec …` — without a launcher type of its own.
public final class CommandLauncher: HostLauncher {
    public struct Configuration: Sendable {
        /// One command line (executable first) per host, with the host's name for errors and logs.
        public var commands: [(host: String, command: [String])]
        /// How long an agent has to print its listening line.
        public var startTimeout: Duration = .seconds(30)
        /// Between closing an agent's stdin and SIGTERM, and between SIGTERM and SIGKILL.
        public var stopGrace: Duration = .seconds(5)
        /// Where the agents' stderr lines go (with `host` metadata).
        public var logger = Logger(label: "spindle.launcher.command")

        public init(commands: [(host: String, command: [String])]) {
            self.commands = commands
        }
    }

    public let configuration: Configuration
    private let loop: EventLoop
    private let agents = Mutex<[AgentProcess]>([])

    public init(on loop: EventLoop, configuration: Configuration) {
        self.loop = loop
        self.configuration = configuration
    }

    public func up() async throws(LaunchError) -> [Address] {
        var addresses: [Address] = []
        for (host, command) in configuration.commands {
            guard let executable = command.first else { throw LaunchError(host: host, problem: "empty command line") }
            do {
                let (agent, address) = try await AgentProcess.start(
                    host: host, executable: executable, arguments: Array(command.dropFirst()),
                    loop: loop, timeout: configuration.startTimeout, logger: configuration.logger)
                agents.withLock { $0.append(agent) }
                addresses.append(address)
            } catch {
                await down()
                throw error
            }
        }
        return addresses
    }

    public func down() async {
        let all = agents.withLock { a -> [AgentProcess] in defer { a = [] }; return a }
        await withTaskGroup(of: Void.self) { group in
            for agent in all { group.addTask { await agent.stop(grace: self.configuration.stopGrace) } }
        }
    }

    /// The launched processes' ids, in host order.
    public var pids: [Int32] { agents.withLock { $0.map(\.child.pid) } }
}
