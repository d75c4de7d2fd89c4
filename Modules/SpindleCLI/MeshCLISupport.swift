import ArgumentParser
import Logging
import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses of the `spindle mesh` commands besides 0 (docs/cli.md).
enum MeshExit {
    /// A proc could not start, an agent refused, or no such detached proc mesh.
    static let failed: Int32 = 1
    /// Some host could not be reached, attached to, or was lost.
    static let unavailable: Int32 = 69
    /// Waiting (for procs to start or stop) timed out.
    static let timedOut: Int32 = 75
}

/// What every `spindle mesh` command that works on one mesh takes.
struct MeshTarget: ParsableArguments {
    @Argument(help: "The host mesh: name@tcp://host:port,…")
    var ref: String

    @Option(name: .long, help: "Seconds to wait for attaching and for each agent's answers.")
    var timeout: Double = 10

    @OptionGroup var common: CommonOptions

    func parsedRef() throws -> HostMeshRef {
        do { return try HostMeshRef(parsing: ref) } catch { throw ValidationError(error.description) }
    }

    func validateTimeout() throws {
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
    }
}

/// The proc command of `mesh run` / `mesh spawn`: `--per-host`, `--env`, and what follows `--`.
struct ProcCommandOptions: ParsableArguments {
    @Option(name: .long, help: "Procs per host.")
    var perHost: Int = 1

    @Option(name: .long, help: ArgumentHelp("Extra environment of every proc (repeatable).", valueName: "KEY=VALUE"))
    var env: [String] = []

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The program and its arguments, after --.", valueName: "program"))
    var command: [String] = []

    func validate() throws {
        guard perHost >= 1 else { throw ValidationError("--per-host must be at least 1") }
        guard !command.isEmpty else { throw ValidationError("give the program after --, e.g. -- sh -c 'echo hi'") }
        _ = try environment()
    }

    func environment() throws -> [String: String] {
        var out: [String: String] = [:]
        for e in env {
            guard let eq = e.firstIndex(of: "="), eq != e.startIndex else {
                throw ValidationError("--env \"\(e)\": expected KEY=VALUE")
            }
            out[String(e[..<eq])] = String(e[e.index(after: eq)...])
        }
        return out
    }

    func bootstrap() throws -> BootstrapCommand {
        BootstrapCommand(program: command[0], arguments: Array(command.dropFirst()), environment: try environment())
    }
}

/// `seconds` as a `Duration`.
func seconds(_ s: Double) -> Duration { .milliseconds(Int64((s * 1000).rounded())) }

/// Prints to stderr.
func printError(_ text: String) {
    var line = Array((text + "\n").utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

/// One line per rank: `rank host pid state`.
func rankTable(_ statuses: [ProcStatus], host: (ProcStatus) -> String) -> String {
    statuses.sorted { $0.rank < $1.rank }.map { st in
        "\(st.rank) \(host(st)) \(st.pid.map(String.init) ?? "-") \(st.state)"
            + (st.restarts > 0 ? " restarts=\(st.restarts)" : "")
    }.joined(separator: "\n")
}

/// A loop and a TCP transport for one command, with the cluster key when given.
struct CLINetwork {
    let loop: EventLoop
    let transport: any Transport

    init(_ common: CommonOptions, name: String) throws {
        let key = try common.keyFile.map(loadClusterKey)
        loop = try EventLoop(name: name)
        transport = makeTCPTransport(loop: loop, key: key)
    }

    func shutdown() async {
        await transport.shutdown()
        await loop.shutdown()
    }
}

/// The mesh client configuration of the CLI: `timeout` for attaching and waiting; the
/// library's own progress messages only from `--log-level debug` on.
func cliMeshConfiguration(timeout: Double, logLevel: Logger.Level = .info) -> HostMesh.Configuration {
    var c = HostMesh.Configuration()
    c.spawnIdleTimeout = seconds(max(timeout, 1))
    c.stopIdleTimeout = seconds(max(timeout, 1) + 30)
    c.stateIdleTimeout = seconds(timeout)
    c.requestTimeout = seconds(timeout)
    c.logger = Logger(label: "spindle.mesh")
    c.logger.logLevel = logLevel <= .debug ? logLevel : max(logLevel, .warning)
    return c
}
