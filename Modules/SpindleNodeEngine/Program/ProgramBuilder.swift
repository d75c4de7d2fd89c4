/// Builds a `Program` in Swift.
///
/// ```swift
/// var b = ProgramBuilder("echo")
/// b.site("in", .int); b.site("out", .int)
/// b.op("double", .component(slot: "math", op: "double"), inputs: ["x": "in"], outputs: ["y": "out"])
/// let program = b.program
/// ```
public struct ProgramBuilder: Sendable {
    public private(set) var program: Program

    public init(_ name: String) {
        program = Program(name: name)
    }

    /// Declares a site.
    public mutating func site(_ name: String, _ type: ValueType = .any) {
        program.sites.append(SiteSpec(name: name, type: type))
    }

    /// Adds an op.
    public mutating func op(_ name: String, _ call: OpCall, inputs: [String: String] = [:],
                            outputs: [String: String] = [:], params: [String: Value] = [:]) {
        program.ops.append(OpSpec(name: name, call: call, inputs: inputs, outputs: outputs, params: params))
    }

    /// Adds a syscall op.
    public mutating func syscall(_ name: String, _ kind: SyscallKind, inputs: [String: String] = [:],
                                 outputs: [String: String] = [:], params: [String: Value] = [:]) {
        op(name, .syscall(kind.rawValue), inputs: inputs, outputs: outputs, params: params)
    }

    /// Starts an execution at `site` whenever the bus publishes an event of `kind`.
    public mutating func subscribe(_ kind: NodeEventKind, site: String) {
        program.subscriptions.append(EventSubscription(event: kind, site: site))
    }
}
