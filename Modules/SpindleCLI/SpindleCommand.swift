import ArgumentParser

/// `spindle`: the host agent daemon, the proc helper and mesh tools.
@main
struct SpindleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spindle",
        abstract: "Spindle host agents, procs and mesh tools.",
        subcommands: [HostAgentCommand.self, MeshCommand.self, ProcCommand.self, KeygenCommand.self, ClusterCommand.self])
}
