import ArgumentParser
import Spindle

/// `spindle keygen FILE`: writes a new random cluster key.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new random 256-bit cluster key to FILE (mode 0600; an existing file is never overwritten).",
        discussion: """
            Every host agent, proc and client of a cluster is given the same key file with \
            --key-file. Copy it to each host over a secure channel (scp) and keep it mode 0600: \
            a key file readable by others is refused.
            """)

    @Argument(help: "Where to write the key.")
    var file: String

    func run() throws {
        do {
            try ClusterKey.random().write(toFile: file)
        } catch {
            throw CLIError(description: error.description)
        }
        printFlushed("wrote a new 256-bit cluster key to \(file) (mode 0600)")
    }
}
