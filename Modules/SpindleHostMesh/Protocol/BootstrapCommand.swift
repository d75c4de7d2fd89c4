/// How an agent starts one proc: a program, its arguments and extra environment.
///
/// The agent resolves `program` (a path, or a name looked up in `PATH`), checks its real path
/// against the agent's allow list, and starts it with the agent's environment, then
/// `environment`, then the `SPINDLE_*` variables of `ProcEnvironment` on top.
public struct BootstrapCommand: Sendable, Hashable, Codable, CustomStringConvertible {
    public var program: String
    public var arguments: [String]
    public var environment: [String: String]

    public init(program: String, arguments: [String] = [], environment: [String: String] = [:]) {
        self.program = program
        self.arguments = arguments
        self.environment = environment
    }

    public var description: String {
        ([program] + arguments).joined(separator: " ")
    }
}
