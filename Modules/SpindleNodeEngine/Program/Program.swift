/// A graph of ops between named sites: what a node runs.
///
/// Build one with `ProgramBuilder` or decode it from JSON:
/// ```json
/// {"name": "echo",
///  "sites": [{"name": "in", "type": "int"}, {"name": "out", "type": "int"}],
///  "ops": [{"name": "double", "call": {"component": "math", "op": "double"},
///           "inputs": {"x": "in"}, "outputs": {"y": "out"}}]}
/// ```
/// A site with no consuming op is a sink: the values written to it are the results of the
/// execution. Every site can be an entry point (filled by the host or by a wire message).
public struct Program: Sendable, Equatable, Codable {
    public var name: String
    public var sites: [SiteSpec]
    public var ops: [OpSpec]
    /// Bus events that start an execution at a site.
    public var subscriptions: [EventSubscription]

    public init(name: String, sites: [SiteSpec] = [], ops: [OpSpec] = [], subscriptions: [EventSubscription] = []) {
        self.name = name
        self.sites = sites
        self.ops = ops
        self.subscriptions = subscriptions
    }

    enum CodingKeys: String, CodingKey { case name, sites, ops, subscriptions }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? "program"
        sites = try c.decodeIfPresent([SiteSpec].self, forKey: .sites) ?? []
        ops = try c.decodeIfPresent([OpSpec].self, forKey: .ops) ?? []
        subscriptions = try c.decodeIfPresent([EventSubscription].self, forKey: .subscriptions) ?? []
    }
}

/// A named, typed site.
public struct SiteSpec: Sendable, Equatable, Codable {
    public var name: String
    public var type: ValueType

    public init(name: String, type: ValueType = .any) {
        self.name = name
        self.type = type
    }

    enum CodingKeys: String, CodingKey { case name, type }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        type = try c.decodeIfPresent(ValueType.self, forKey: .type) ?? .any
    }
}

/// What an op calls: a built-in syscall or an op of a component installed at a slot.
public enum OpCall: Sendable, Equatable, Codable, CustomStringConvertible {
    case syscall(String)
    case component(slot: String, op: String)

    enum CodingKeys: String, CodingKey { case syscall, component, op }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let s = try c.decodeIfPresent(String.self, forKey: .syscall) {
            self = .syscall(s)
        } else {
            self = .component(slot: try c.decode(String.self, forKey: .component),
                              op: try c.decode(String.self, forKey: .op))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .syscall(let s): try c.encode(s, forKey: .syscall)
        case .component(let slot, let op):
            try c.encode(slot, forKey: .component)
            try c.encode(op, forKey: .op)
        }
    }

    public var description: String {
        switch self {
        case .syscall(let s): return "syscall \(s)"
        case .component(let slot, let op): return "\(slot).\(op)"
        }
    }
}

/// One op: what it calls, which sites fill its input ports, which sites its outputs write.
public struct OpSpec: Sendable, Equatable, Codable {
    public var name: String
    public var call: OpCall
    /// Input port name → site name.
    public var inputs: [String: String]
    /// Output port name → site name.
    public var outputs: [String: String]
    /// Parameters (syscall settings, or anything a component reads from the current call).
    public var params: [String: Value]

    public init(name: String, call: OpCall, inputs: [String: String] = [:], outputs: [String: String] = [:],
                params: [String: Value] = [:]) {
        self.name = name
        self.call = call
        self.inputs = inputs
        self.outputs = outputs
        self.params = params
    }

    enum CodingKeys: String, CodingKey { case name, call, inputs, outputs, params }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        call = try c.decode(OpCall.self, forKey: .call)
        inputs = try c.decodeIfPresent([String: String].self, forKey: .inputs) ?? [:]
        outputs = try c.decodeIfPresent([String: String].self, forKey: .outputs) ?? [:]
        params = try c.decodeIfPresent([String: Value].self, forKey: .params) ?? [:]
    }
}

/// Starts an execution at `site` for every bus event of kind `event` (the event's text is the
/// value written).
public struct EventSubscription: Sendable, Equatable, Codable {
    public var event: NodeEventKind
    public var site: String

    public init(event: NodeEventKind, site: String) {
        self.event = event
        self.site = site
    }
}
