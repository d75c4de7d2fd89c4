import ArgumentParser
import Logging
import Spindle

/// `spindle mesh spawn REF --name NAME [--per-host K] [--env K=V]… -- PROGRAM [ARGS…]`.
struct MeshSpawnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spawn",
        abstract: "Start a detached proc mesh: it keeps running after this command exits.",
        discussion: """
        The procs belong to the cluster, not to this command: any client with the cluster key \
        can list them (mesh status), read their output (mesh logs) and stop them (mesh stop) by \
        name. Prints one line per rank, "rank host pid state", once every rank is running. \
        Exit status: 0 when every rank is running; 1 when a rank could not start or an agent \
        refused (the error names the ranks), 69 when a host is unreachable, 75 when the ranks \
        did not start in time, 64 for a bad command line.
        """)

    @OptionGroup var target: MeshTarget
    @Option(name: .long, help: "The proc mesh's name (A-Z a-z 0-9 . _ -).")
    var name: String
    @OptionGroup var proc: ProcCommandOptions

    func validate() throws {
        try target.validateTimeout()
        _ = try target.parsedRef()
    }

    func run() async throws {
        bootstrapLogging(try target.common.logLevelValue())
        let ref = try target.parsedRef()
        let command = try proc.bootstrap()
        let net = try CLINetwork(target.common, name: "spindle-mesh-spawn")
        let status = await spawn(ref, command: command, transport: net.transport)
        await net.shutdown()
        if status != 0 { throw ExitCode(status) }
    }

    private func spawn(_ ref: HostMeshRef, command: BootstrapCommand, transport: any Transport) async -> Int32 {
        let mesh: HostMesh
        do {
            mesh = try await HostMesh.attach(name: ref.name, hosts: ref.hosts, config: ConfigSnapshot(),
                                             timeout: seconds(target.timeout), transport: transport,
                                             configuration: cliMeshConfiguration(timeout: target.timeout, logLevel: (try? target.common.logLevelValue()) ?? .info))
        } catch {
            printError("spindle mesh spawn: \(error)")
            return MeshExit.unavailable
        }
        defer { _ = mesh }
        let code: Int32
        do {
            let procs = try await mesh.spawnProcs(name: name, perHost: proc.perHost,
                                                  options: SpawnOptions(detached: true, readiness: .started)) { _ in command }
            printFlushed(rankTable(procs.lastKnown) { procs.host(ofRank: $0.rank).description })
            code = 0
        } catch {
            printError("spindle mesh spawn: \(error)")
            if let states = error.states {
                printError(rankTable(states.enumerated().map { ProcStatus(mesh: name, rank: $0.offset, state: $0.element) }) {
                    ref.hosts[$0.rank / max(proc.perHost, 1)].description
                })
            }
            switch error {
            case .hostFailed, .hostLost: code = MeshExit.unavailable
            case .spawnTimedOut: code = MeshExit.timedOut
            default: code = MeshExit.failed
            }
        }
        // Ends this client's session; the detached procs stay.
        await mesh.shutdown()
        return code
    }
}
