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

extension BootstrapCommand {
    /// The bytes the command puts into a process's argv and environment (each string with its
    /// NUL, each variable as `KEY=VALUE`): what `HostAgent.Limits.maxBootstrapBytes` bounds.
    public var byteCount: Int {
        var n = program.utf8.count + 1
        for a in arguments { n += a.utf8.count + 1 }
        for (k, v) in environment { n += k.utf8.count + v.utf8.count + 2 }
        return n
    }
}
