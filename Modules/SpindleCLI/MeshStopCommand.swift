import ArgumentParser
import Logging
import Spindle

/// `spindle mesh stop REF --name NAME`: stops a detached proc mesh.
struct MeshStopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop a detached proc mesh and print its final states.",
        discussion: """
        Each agent stops the mesh's procs (SIGTERM to each proc's process group, its grace, \
        SIGKILL) and answers once they have all ended; prints "rank host pid state" per rank. \
        Exit status: 0 when the procs were stopped; 1 when no host runs a detached proc mesh of \
        that name; 69 when a host could not be asked; 64 for a bad command line.
        """)

    @OptionGroup var target: MeshTarget
    @Option(name: .long, help: "The detached proc mesh's name.")
    var name: String

    func validate() throws {
        try target.validateTimeout()
        _ = try target.parsedRef()
    }

    func run() async throws {
        bootstrapLogging(try target.common.logLevelValue())
        let ref = try target.parsedRef()
        let net = try CLINetwork(target.common, name: "spindle-mesh-stop")
        let reports = await MeshAdmin(meshes: [ref]).stopDetached(name, transport: net.transport,
                                                                 timeout: seconds(target.timeout) + .seconds(30))
        await net.shutdown()
        var rows: [(ProcStatus, Address)] = []
        var unreachable = false
        for r in reports {
            switch r.result {
            case .success(let statuses): rows += statuses.map { ($0, r.host) }
            case .failure(let f):
                printError("spindle mesh stop: \(r.host): \(f)")
                unreachable = true
            }
        }
        let hostOf = Dictionary(rows.map { ($0.0.rank, $0.1) }, uniquingKeysWith: { a, _ in a })
        if !rows.isEmpty { printFlushed(rankTable(rows.map(\.0)) { hostOf[$0.rank]?.description ?? "-" }) }
        if unreachable { throw ExitCode(MeshExit.unavailable) }
        if rows.isEmpty {
            printError("spindle mesh stop: no host of \(ref) runs a detached proc mesh named \"\(name)\"")
            throw ExitCode(MeshExit.failed)
        }
    }
}
