import Logging
import SpindleEventLoop
import SpindleKernel

/// Runs `spindle host-agent` on remote machines through the system `ssh` client, one session
/// per host, like Dask's SSHCluster: each agent listens on the host's wildcard address and
/// advertises the host name it was reached by, its stderr comes back into this launcher's
/// log, and it exits when its ssh session ends (`--exit-on-stdin-close`): on `down()`, and
/// when this process dies.
public final class SSHLauncher: HostLauncher {
    /// One remote host: `[user@]host[:port]`.
    public struct Host: Sendable, Equatable, CustomStringConvertible {
        public var user: String?
        public var host: String
        /// The ssh port (nil: ssh's default).
        public var port: Int?

        public init(user: String? = nil, host: String, port: Int? = nil) {
            self.user = user
            self.host = host
            self.port = port
        }

        /// Parses `[user@]host[:port]`.
        /// - Throws: `LaunchError` naming the text when it is not of that form.
        public init(parsing text: String) throws(LaunchError) {
            var rest = Substring(text)
            if let at = rest.firstIndex(of: "@") {
                let u = rest[..<at]
                guard !u.isEmpty else { throw LaunchError(host: text, problem: "empty user before '@'") }
                user = String(u)
                rest = rest[rest.index(after: at)...]
            } else {
                user = nil
            }
            if let colon = rest.lastIndex(of: ":"), !rest.contains("[") {
                guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else {
                    throw LaunchError(host: text, problem: "the ssh port after ':' is not a number from 1 to 65535")
                }
                port = p
                rest = rest[..<colon]
            } else {
                port = nil
            }
            guard !rest.isEmpty, !rest.contains(where: { $0 == " " || $0 == "/" }) else {
                throw LaunchError(host: text, problem: "not a host name or address")
            }
            host = String(rest)
        }

        public var description: String { (user.map { "\($0)@" } ?? "") + host + (port.map { ":\($0)" } ?? "") }
    }

    public struct Configuration: Sendable {
        public var hosts: [Host]
        /// The ssh client.
        public var sshExecutable = "ssh"
        /// `-i` identity file.
        public var identityFile: String?
        /// Extra `-o` options for ssh (e.g. `StrictHostKeyChecking=accept-new`).
        public var sshOptions: [String] = ["BatchMode=yes", "ConnectTimeout=10"]
        /// Path of `spindle` on the remote hosts (the same path as here by default).
        public var remoteBinary: String
        /// Path of the cluster key file on the remote hosts (required: agents listen beyond
        /// loopback).
        public var remoteKeyFile: String
        /// The port each agent listens on (0: any free port, reported back).
        public var agentPort: UInt16 = 0
        /// Programs procs may run (`--allow`); empty: the agent's default.
        public var allowedPrograms: [String] = []
        /// Extra arguments for `spindle host-agent`.
        public var extraArguments: [String] = []
        /// How long an agent has to print its listening line (ssh connect included).
        public var startTimeout: Duration = .seconds(60)
        /// Between closing an agent's ssh session and SIGTERM to ssh, and before SIGKILL.
        public var stopGrace: Duration = .seconds(5)
        /// Where the agents' stderr (and ssh's) goes, with `host` metadata.
        public var logger = Logger(label: "spindle.launcher.ssh")

        public init(hosts: [Host], remoteBinary: String, remoteKeyFile: String) {
            self.hosts = hosts
            self.remoteBinary = remoteBinary
            self.remoteKeyFile = remoteKeyFile
        }
    }

    public let configuration: Configuration
    private let agents: CommandLauncher

    public init(on loop: EventLoop, configuration: Configuration) {
        self.configuration = configuration
        var c = CommandLauncher.Configuration(commands: configuration.hosts.map {
            (host: $0.description, command: [configuration.sshExecutable] + Self.sshArguments(for: $0, configuration))
        })
        c.startTimeout = configuration.startTimeout
        c.stopGrace = configuration.stopGrace
        c.logger = configuration.logger
        agents = CommandLauncher(on: loop, configuration: c)
    }

    /// The ssh command line for `host` (without the executable).
    static func sshArguments(for host: Host, _ configuration: Configuration) -> [String] {
        var args = ["-T"]
        if let id = configuration.identityFile { args += ["-i", id] }
        if let port = host.port { args += ["-p", "\(port)"] }
        for option in configuration.sshOptions { args += ["-o", option] }
        args.append(host.user.map { "\($0)@\(host.host)" } ?? host.host)
        let listenHost = host.host.contains(":") ? "[::]" : "0.0.0.0"
        var remote = [configuration.remoteBinary, "host-agent",
                      "--listen", "tcp://\(listenHost):\(configuration.agentPort)",
                      "--advertise", host.host.contains(":") ? "[\(host.host)]" : host.host,
                      "--key-file", configuration.remoteKeyFile, "--exit-on-stdin-close"]
        if !configuration.allowedPrograms.isEmpty { remote += ["--allow"] + configuration.allowedPrograms }
        remote += configuration.extraArguments
        // ssh hands the remote command to a shell: quote every word.
        args.append("--")
        args.append(remote.map(Self.shellQuoted).joined(separator: " "))
        return args
    }

    static func shellQuoted(_ word: String) -> String {
        if !word.isEmpty, word.allSatisfy({ $0.isLetter || $0.isNumber || "/-_.:=,@[]".contains($0) }) { return word }
        return "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }

    public func up() async throws(LaunchError) -> [Address] { try await agents.up() }

    public func down() async { await agents.down() }
}
