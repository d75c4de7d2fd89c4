/// Why a program (or a component) could not be installed; names the op, port, site or slot.
public enum ProgramError: Error, Sendable, Equatable, CustomStringConvertible {
    case duplicateSite(String)
    case duplicateOp(String)
    /// The op calls a syscall that does not exist, or an op its component does not declare.
    case unknownOp(op: String, call: String)
    /// The op calls a component at a slot where nothing is installed.
    case unboundSlot(op: String, slot: String)
    /// The op names a port its callee does not have.
    case unknownPort(op: String, port: String)
    /// A port refers to a site the program does not declare.
    case unknownSite(op: String, port: String, site: String)
    /// A required input port is not connected.
    case missingInput(op: String, port: String)
    /// A port and its site have incompatible types.
    case typeMismatch(op: String, port: String, site: String, portType: ValueType, siteType: ValueType)
    /// A parameter is missing or has the wrong form.
    case invalidParameter(op: String, parameter: String, problem: String)
    /// These ops form a cycle that nothing outside it can start.
    case cycleWithoutTrigger(ops: [String])
    /// A subscription names a site the program does not declare.
    case unknownSubscriptionSite(String)
    /// The node already runs a program (install one per node).
    case alreadyInstalled(String)

    public var description: String {
        switch self {
        case .duplicateSite(let s): return "site `\(s)` is declared twice"
        case .duplicateOp(let o): return "op `\(o)` is declared twice"
        case .unknownOp(let o, let c): return "op `\(o)`: unknown callee \(c)"
        case .unboundSlot(let o, let s): return "op `\(o)`: no component is installed at slot `\(s)`"
        case .unknownPort(let o, let p): return "op `\(o)`: its callee has no port `\(p)`"
        case .unknownSite(let o, let p, let s): return "op `\(o)`, port `\(p)`: site `\(s)` is not declared"
        case .missingInput(let o, let p): return "op `\(o)`: required input `\(p)` is not connected"
        case .typeMismatch(let o, let p, let s, let pt, let st):
            return "op `\(o)`, port `\(p)` of type \(pt) cannot connect to site `\(s)` of type \(st)"
        case .invalidParameter(let o, let p, let why): return "op `\(o)`, parameter `\(p)`: \(why)"
        case .cycleWithoutTrigger(let ops):
            return "ops \(ops.map { "`\($0)`" }.joined(separator: ", ")) form a cycle that no input from outside can start"
        case .unknownSubscriptionSite(let s): return "subscription targets undeclared site `\(s)`"
        case .alreadyInstalled(let p): return "program `\(p)` is already installed on this node"
        }
    }
}
