import SpindleKernel

/// Code installed at a named slot of a node that ops of a program call.
///
/// A component declares its ops (`signatures`) and the slots it depends on; the node checks
/// both when it installs the component and the program. `dispatch` runs on the node's thread,
/// one call at a time, and must not block: long work returns `.async` with a command id from
/// `context.openCompletion()` and completes later from any thread.
public protocol Component: AnyObject {
    /// The ops this component serves; `dispatch` receives an index into this array.
    var signatures: [OpSignature] { get }
    /// Other slots this component reaches through `context.siblings`.
    var dependencies: [ComponentDependency] { get }

    /// Runs op `op` (an index into `signatures`) with its inputs.
    /// - Returns: `.immediate(outputs)` (empty outputs absorb), `.async(command)` to complete
    ///   later, or `.failed(detail)`.
    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult

    /// A timer this component scheduled with `context.time.schedule(component:…)` matured.
    func timerFired(kind: UInt32, context: NodeContext)
}

extension Component {
    public var dependencies: [ComponentDependency] { [] }
    public func timerFired(kind: UInt32, context: NodeContext) {}
}

/// The ports of one component op.
public struct OpSignature: Sendable, Equatable {
    public var name: String
    public var inputs: [PortSpec]
    public var outputs: [PortSpec]
    /// Whether the op may return `.async` (the pending-async cap applies before dispatch).
    public var isAsync: Bool

    public init(_ name: String, inputs: [PortSpec] = [], outputs: [PortSpec] = [], isAsync: Bool = false) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.isAsync = isAsync
    }
}

/// A named, typed port. An input with a `group` belongs to an any-of group: the op needs at
/// least one input of each group; inputs without a group are all required. An input marked
/// `optional` is neither.
public struct PortSpec: Sendable, Equatable {
    public var name: String
    public var type: ValueType
    public var group: String?
    public var optional: Bool

    public init(_ name: String, _ type: ValueType = .any, group: String? = nil, optional: Bool = false) {
        self.name = name
        self.type = type
        self.group = group
        self.optional = optional
    }
}

/// What `dispatch` returns.
public enum DispatchResult: Sendable {
    /// Outputs to write now; empty outputs absorb (nothing downstream fires).
    case immediate(OpOutputs)
    /// The op completes later with this command id (see `NodeContext.openCompletion()`).
    case async(CommandID)
    /// The op failed; the node publishes `opFailed` with this detail.
    case failed(String)

    /// No outputs: the op absorbs its inputs.
    public static var absorb: DispatchResult { .immediate(OpOutputs()) }
}

/// A slot a component depends on, and the type the component there must have.
public struct ComponentDependency: Sendable {
    public var slot: String
    public var typeName: String
    let accepts: @Sendable (any Component) -> Bool

    /// Depends on slot `slot` holding a component of type `type` (a class or a protocol).
    public init<T>(slot: String, type: T.Type) {
        self.slot = slot
        self.typeName = String(describing: type)
        self.accepts = { $0 is T }
    }
}

/// Why a component could not be installed or reached.
public enum DependencyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing is installed at the slot.
    case notBound(slot: String, requiredBy: String)
    /// Something of another type is installed at the slot.
    case typeMismatch(slot: String, expected: String, found: String)
    /// A component tried to reach itself through the sibling view while it dispatches.
    case selfAccess(slot: String)
    /// A component is already installed at the slot.
    case slotTaken(String)

    public var description: String {
        switch self {
        case .notBound(let s, let by): return "slot `\(s)` (required by `\(by)`) has no component installed"
        case .typeMismatch(let s, let e, let f): return "component at slot `\(s)` is a `\(f)`, not a `\(e)`"
        case .selfAccess(let s): return "the component at slot `\(s)` cannot reach itself while it dispatches"
        case .slotTaken(let s): return "slot `\(s)` already has a component installed"
        }
    }
}
