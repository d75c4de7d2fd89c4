import ArgumentParser
import Logging
import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// `spindle cluster …`: bring host agents up on a set of machines and take them down.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Start host agents on many machines (over ssh) and stop them.",
        subcommands: [ClusterUpCommand.self, ClusterDownCommand.self])
}

/// What `cluster up` leaves for `cluster down` and for the other commands: its pid and the
/// mesh reference, one `key=value` per line.
struct ClusterState {
    var pid: Int32
    var ref: String

    static func defaultPath(name: String) -> String {
        let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
        return "\(home)/.spindle/clusters/\(name).state"
    }

    func write(to path: String) throws {
        if let slash = path.lastIndex(of: "/") { try makeDirectories(String(path[..<slash])) }
        try writeFile(path, "pid=\(pid)\nref=\(ref)\n")
    }

    static func read(_ path: String) throws -> ClusterState {
        let text = String(decoding: try readFile(path), as: UTF8.self)
        var pid: Int32?, ref: String?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("pid=") { pid = Int32(line.dropFirst(4)) }
            if line.hasPrefix("ref=") { ref = String(line.dropFirst(4)) }
        }
        guard let pid, let ref else { throw CLIError(description: "\(path) is not a cluster state file (no pid= and ref= lines)") }
        return ClusterState(pid: pid, ref: ref)
    }
}

/// `mkdir -p`.
func makeDirectories(_ path: String) throws {
    var built = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        built += "/" + part
        if mkdir(built, 0o755) != 0 && errno != EEXIST {
            throw CLIError(description: "cannot create directory \(built): \(String(cString: strerror(errno)))")
        }
    }
}

/// `spindle cluster up`: starts an agent per host, prints the mesh reference, and keeps the
/// agents (their ssh sessions) until SIGINT/SIGTERM or `spindle cluster down`.
struct ClusterUpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a host agent on every host and print the mesh reference (name@tcp://…).",
        discussion: """
            With --ssh, each agent runs as `ssh [user@]host REMOTE-BINARY host-agent …` and listens \
            on every interface of its host, advertising the host name it was reached by. The \
            agents live as long as this command: it waits for SIGINT/SIGTERM or `spindle cluster \
            down`, then stops them (their procs die with them). With --detach it runs in the \
            background and returns once the cluster is up. Exit status: 0 when the cluster came \
            up (and, in the foreground, went down cleanly), 1 when an agent could not be started.
            """)

    @Option(name: .long, help: "Hosts to start agents on, [user@]host[:sshport], comma separated.")
    var ssh: String?

    @Option(name: .long, help: "Start this many agents on this machine instead (loopback).")
    var local: Int?

    @Option(name: .long, help: "Name of the mesh in the printed reference (also names the default state file).")
    var name: String = "cluster"

    @Option(name: .long, help: "Path of spindle on the remote hosts (default: this executable's path).")
    var remoteBinary: String?

    @Option(name: .long, help: "Path of the key file on the remote hosts (default: the --key-file path).")
    var remoteKeyFile: String?

    @Option(name: .long, help: "ssh identity file (-i).")
    var identity: String?

    @Option(name: .long, help: "Extra ssh -o option, e.g. StrictHostKeyChecking=accept-new (repeatable).")
    var sshOption: [String] = []

    @Option(name: .long, help: "Port every agent listens on (0: any free port).")
    var agentPort: UInt16 = 0

    @Option(name: .long, parsing: .upToNextOption, help: "Programs procs may run (passed to every agent).")
    var allow: [String] = []

    @Option(name: .long, help: "Where to write the state (pid and reference); default ~/.spindle/clusters/NAME.state.")
    var stateFile: String?

    @Option(name: .long, help: "Seconds each agent has to come up.")
    var timeout: Double = 60

    @Flag(name: .long, help: "Run in the background; return once the cluster is up.")
    var detach = false

    @Option(name: .long, help: ArgumentHelp("Log file of a detached cluster (set by --detach).", visibility: .hidden))
    var logFile: String?

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard (ssh == nil) != (local == nil) else { throw ValidationError("give exactly one of --ssh HOSTS and --local N") }
        if let local, local < 1 { throw ValidationError("--local must be at least 1") }
        if ssh != nil && common.keyFile == nil {
            throw ValidationError("--ssh needs --key-file: agents reachable from other machines must authenticate and encrypt")
        }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let statePath = stateFile ?? ClusterState.defaultPath(name: name)
        if detach { return try await runDetached(statePath: statePath) }
        if let logFile {
            // A detached run: everything it logs goes to its log file.
            let fd = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            if fd >= 0 { dup2(fd, 1); dup2(fd, 2); close(fd) }
        }
        bootstrapLogging(try common.logLevelValue())
        let logger = Logger(label: "spindle.cluster")
        let loop = try EventLoop(name: "spindle-cluster")
        let me = absolutePath(CommandLine.arguments[0])
        let launcher: any HostLauncher
        if let ssh {
            var hosts: [SSHLauncher.Host] = []
            for part in ssh.split(separator: ",") {
                do { hosts.append(try SSHLauncher.Host(parsing: String(part))) } catch { throw ValidationError(error.description) }
            }
            var c = SSHLauncher.Configuration(hosts: hosts, remoteBinary: remoteBinary ?? me,
                                              remoteKeyFile: remoteKeyFile ?? absolutePath(common.keyFile!))
            c.identityFile = identity
            c.sshOptions += sshOption
            c.agentPort = agentPort
            c.allowedPrograms = allow
            c.startTimeout = .milliseconds(Int64(timeout * 1000))
            c.logger = logger
            launcher = SSHLauncher(on: loop, configuration: c)
        } else {
            var c = LocalLauncher.Configuration(spindleExecutable: me, count: local!)
            c.keyFile = common.keyFile.map(absolutePath)
            c.allowedPrograms = allow
            c.startTimeout = .milliseconds(Int64(timeout * 1000))
            c.logger = logger
            launcher = LocalLauncher(on: loop, configuration: c)
        }
        let (signals, continuation) = AsyncStream<Int32>.makeStream()
        let watcher = try await SignalWatcher.watch(on: loop, signals: [SIGINT, SIGTERM]) { continuation.yield($0) }
        let addresses: [Address]
        do {
            addresses = try await launcher.up()
        } catch {
            watcher.cancel()
            await loop.shutdown()
            throw CLIError(description: error.description)
        }
        let ref = try HostMeshRef(name: name, hosts: addresses)
        try ClusterState(pid: getpid(), ref: "\(ref)").write(to: statePath)
        printFlushed("\(ref)")
        var it = signals.makeAsyncIterator()
        let sig = await it.next() ?? SIGTERM
        logger.info("signal received; stopping the agents", metadata: ["signal": "\(sig)"])
        watcher.cancel()
        await launcher.down()
        unlink(statePath)
        await loop.shutdown()
    }

    /// Starts this command again in its own session, in the background, and returns once
    /// its state file names the cluster (or reports why it did not come up).
    private func runDetached(statePath: String) async throws {
        let logPath = statePath + ".log"
        unlink(statePath)
        var arguments = Array(CommandLine.arguments.dropFirst()).filter { $0 != "--detach" }
        if stateFile == nil { arguments += ["--state-file", statePath] }
        arguments += ["--log-file", logPath]
        // posix_spawn, not a loop's ChildProcess: a loop kills its children when it shuts
        // down, and this one must outlive us (in its own session, reparented to init).
        let pid = try spawnDetached(absolutePath(CommandLine.arguments[0]), arguments)
        let deadline = SystemClock().now() + .milliseconds(Int64(timeout * 1000) * 2 + 5000)
        while SystemClock().now() < deadline {
            if let state = try? ClusterState.read(statePath) {
                printFlushed(state.ref)
                return
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let tail = (try? String(decoding: readFile(logPath), as: UTF8.self)) ?? ""
                throw CLIError(description: "the cluster did not come up (exit status \(status >> 8)); \(logPath):\n"
                               + tail.split(separator: "\n").suffix(10).joined(separator: "\n"))
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(pid, SIGTERM)
        throw CLIError(description: "the cluster did not come up in time; see \(logPath)")
    }
}

/// `spindle cluster down`: stops a cluster that `spindle cluster up` started.
struct ClusterDownCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop the agents of a cluster started by `spindle cluster up` (by name, reference or state file).",
        discussion: "Exit status: 0 once every agent is stopped, 1 when the cluster cannot be found or does not stop in time.")

    @Argument(help: "The cluster's name or mesh reference (name@tcp://…); default: cluster.")
    var cluster: String?

    @Option(name: .long, help: "The state file `cluster up` wrote.")
    var stateFile: String?

    @Option(name: .long, help: "Seconds to wait for the agents to stop.")
    var timeout: Double = 30

    func run() async throws {
        let name: String
        if let cluster, let at = cluster.firstIndex(of: "@") { name = String(cluster[..<at]) } else { name = cluster ?? "cluster" }
        let path = stateFile ?? ClusterState.defaultPath(name: name)
        let state = try ClusterState.read(path)
        if let cluster, cluster.contains("@"), cluster != state.ref {
            throw CLIError(description: "\(path) describes \(state.ref), not \(cluster)")
        }
        guard kill(state.pid, SIGTERM) == 0 || errno != ESRCH else {
            unlink(path)
            printFlushed("\(state.ref): already down")
            return
        }
        let deadline = SystemClock().now() + .milliseconds(Int64(timeout * 1000))
        while kill(state.pid, 0) == 0 {
            guard SystemClock().now() < deadline else {
                throw CLIError(description: "\(state.ref) did not stop within \(timeout) s (pid \(state.pid))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        printFlushed("\(state.ref): down")
    }
}

/// Starts `executable arguments` in a new session with its standard streams on /dev/null, not
/// watched by any event loop; returns its pid.
func spawnDetached(_ executable: String, _ arguments: [String]) throws -> pid_t {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    posix_spawnattr_setflags(&attributes, 0x80)   // POSIX_SPAWN_SETSID (glibc 2.26+; not imported into Swift)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd in 0...2 { posix_spawn_file_actions_addopen(&actions, Int32(fd), "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
    guard rc == 0 else { throw CLIError(description: "cannot start \(executable): \(String(cString: strerror(rc)))") }
    return pid
}
