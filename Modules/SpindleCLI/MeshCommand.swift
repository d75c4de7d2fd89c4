import ArgumentParser
import Logging
import Spindle

/// `spindle mesh …`: tools for host meshes.
struct MeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "Inspect host meshes.",
        subcommands: [MeshStatusCommand.self])
}

/// `spindle mesh status <ref>…`: a table of every host and its procs.
struct MeshStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the hosts of one or more meshes (de-duplicated) and their procs.")

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
        let reports = await MeshAdmin(meshes: meshes).status(transport: transport,
                                                             timeout: .milliseconds(Int64(timeout * 1000)))
        print(MeshAdmin.table(reports))
        await transport.shutdown()
        await loop.shutdown()
        if reports.contains(where: { if case .failure = $0.result { true } else { false } }) {
            throw ExitCode(2)
        }
    }
}
