import ArgumentParser
import Logging
import Spindle

/// `spindle mesh …`: run, start, stop, read and inspect procs on host meshes.
struct MeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "Run, start, stop, read and inspect procs on host meshes.",
        subcommands: [MeshRunCommand.self, MeshSpawnCommand.self, MeshStopCommand.self, MeshLogsCommand.self,
                      MeshStatusCommand.self])
}

/// `spindle mesh status <ref>…`: a table of every host, its detached procs and restart counts.
struct MeshStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the hosts of one or more meshes (de-duplicated), their detached procs and restart counts.",
        discussion: """
        Each agent is asked over a session of its own: it shows its client sessions and the \
        detached proc meshes (owned by the cluster), never another client's procs. Exit status: \
        0, 2 when some host could not be asked, 64 for a bad command line.
        """)

    @Argument(help: "Host mesh references: name@tcp://host:port,…")
    var refs: [String]

    @Option(name: .long, help: "Seconds to wait for each agent.")
    var timeout: Double = 5

    @OptionGroup var common: CommonOptions

    func run() async throws {
        bootstrapLogging(try common.logLevelValue())
        guard !refs.isEmpty else { throw ValidationError("give at least one host mesh reference") }
        var meshes: [HostMeshRef] = []
        for r in refs {
            do { meshes.append(try HostMeshRef(parsing: r)) } catch { throw ValidationError(error.description) }
        }
        let key = try common.keyFile.map(loadClusterKey)
        let loop = try EventLoop(name: "spindle-mesh-status")
        let transport = makeTCPTransport(loop: loop, key: key)
        let reports = await MeshAdmin(meshes: meshes).status(transport: transport, timeout: seconds(timeout))
        print(MeshAdmin.table(reports))
        await transport.shutdown()
        await loop.shutdown()
        if reports.contains(where: { if case .failure = $0.result { true } else { false } }) {
            throw ExitCode(2)
        }
    }
}
