import ArgumentParser
import Logging
import Spindle

/// `spindle mesh logs REF --name NAME [--follow]`: prints a detached proc mesh's output.
struct MeshLogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print (and with --follow, follow) the output of a detached proc mesh.",
        discussion: """
        Prints the lines each agent kept (its last 1000 per proc by default), rank-prefixed \
        ("[3] text"; stderr lines "[3!] text"); with --follow, then what the procs write until \
        they have all ended. Exit status: 0; 1 when no host runs a proc mesh of that name; 69 \
        when a host could not be asked; 64 for a bad command line.
        """)

    @OptionGroup var target: MeshTarget
    @Option(name: .long, help: "The detached proc mesh's name.")
    var name: String
    @Flag(name: .long, help: "Keep printing new output until every proc has ended.")
    var follow = false

    func validate() throws {
        try target.validateTimeout()
        _ = try target.parsedRef()
    }

    func run() async throws {
        bootstrapLogging(try target.common.logLevelValue())
        let ref = try target.parsedRef()
        let net = try CLINetwork(target.common, name: "spindle-mesh-logs")
        let logs = await MeshAdmin(meshes: [ref]).logs(of: name, follow: follow, transport: net.transport,
                                                       timeout: seconds(target.timeout))
        for (host, failure) in logs.failures { printError("spindle mesh logs: \(host): \(failure)") }
        for await entry in logs.lines {
            switch entry {
            case .line(let l): printFlushed(l.description)
            case .dropped(let n): printError("spindle mesh logs: \(n) lines dropped")
            }
        }
        await net.shutdown()
        if !logs.failures.isEmpty { throw ExitCode(MeshExit.unavailable) }
        if logs.states.isEmpty {
            printError("spindle mesh logs: no host of \(ref) runs a detached proc mesh named \"\(name)\"")
            throw ExitCode(MeshExit.failed)
        }
    }
}
