/// The built-in syscalls a program op can call (`{"syscall": "<rawValue>"}`).
///
/// | syscall | inputs → outputs | parameters |
/// |---|---|---|
/// | Sleep | in → out (after the delay) | delayMs |
/// | After | [trigger] → out = value (after the delay; with no input it starts with the execution) | delayMs, value |
/// | Any | any ports (any-of) → out: the first arrival of the group, once per execution (or, with scope "node", once per node per window) | group, [scope], [windowMs] |
/// | DeadlineMatch | any ports (any-of) → matched / late: first arrival per execution | withinMs |
/// | RngU64 | [trigger] → out: uint from the seeded RNG | |
/// | IncrMetric | [in] → [out] (passes through) | name, by |
/// | Record | in → [out] (passes through) | name |
/// | HoldStash | in → (absorbs) | name |
/// | HoldFlush | trigger → out: list of held values | name |
/// | SerializeEnqueue | in → (absorbs) | name |
/// | SerializeDequeue | trigger → out: queue head (absorbs when empty) | name |
/// | LimitAcquire | in → out (waits while `max` are held) | name, max |
/// | LimitRelease | in → [out] | name |
/// | Emit | in → (app event for the host) | event |
/// | WireCall | in (or the remote op's ports by name) → out: the remote reply | peer, site or op, [timeoutMs], [chain, hop] |
/// | WireSend | in → (one-way fill of a remote site) | peer, site |
/// | Reply | in → (answers the request that started the execution) | |
///
/// Every op may also bind an output port `error`: a failure writes its text there. Async
/// syscalls take `timeoutMs` (LimitAcquire; WireCall's is its wire deadline); Sleep and After
/// complete when their timer matures, however long that is.
public enum SyscallKind: String, Sendable, CaseIterable, Codable {
    case sleep = "Sleep"
    case after = "After"
    case any = "Any"
    case deadlineMatch = "DeadlineMatch"
    case rngU64 = "RngU64"
    case incrMetric = "IncrMetric"
    case record = "Record"
    case holdStash = "HoldStash"
    case holdFlush = "HoldFlush"
    case serializeEnqueue = "SerializeEnqueue"
    case serializeDequeue = "SerializeDequeue"
    case limitAcquire = "LimitAcquire"
    case limitRelease = "LimitRelease"
    case emit = "Emit"
    case wireCall = "WireCall"
    case wireSend = "WireSend"
    case reply = "Reply"
}

/// What a wire op addresses on the remote node.
public enum WireTarget: Sendable, Equatable, CustomStringConvertible {
    /// Start an execution at this site.
    case site(String)
    /// Fire this op of the remote program with the values as its inputs; its outputs reply.
    case op(String)

    public var description: String {
        switch self {
        case .site(let s): return "site \(s)"
        case .op(let o): return "op \(o)"
        }
    }
}

/// How long an `Any` group stays latched after its first arrival.
enum AnyScope: Sendable, Equatable {
    /// Once per execution: every execution has its own latch.
    case execution
    /// Once per node, re-armed `window` after it fired.
    case node(window: Duration)
}

/// A syscall with its parameters checked and converted at install.
enum SyscallConfig: Sendable {
    case sleep(Duration)
    case after(Duration, Value)
    case any(group: String, scope: AnyScope)
    case deadlineMatch(within: Duration)
    case rngU64
    case incrMetric(name: String, by: Int64)
    case record(name: String)
    case holdStash(name: String)
    case holdFlush(name: String)
    case serializeEnqueue(name: String)
    case serializeDequeue(name: String)
    case limitAcquire(name: String, max: Int)
    case limitRelease(name: String)
    case emit(event: String)
    /// `ports`: the remote op's input ports this call fills by name (nil: the one input `in`).
    case wireCall(peer: String, target: WireTarget, timeout: Duration?, chain: ChainHop?, ports: [String]?)
    case wireSend(peer: String, site: String)
    case reply

    var isAsync: Bool {
        switch self {
        case .sleep, .after, .limitAcquire, .wireCall: return true
        default: return false
        }
    }

    /// Ports of the syscall for an op spec (variadic syscalls take the ports the spec binds).
    static func ports(_ kind: SyscallKind, spec: OpSpec) -> (inputs: [PortSpec], outputs: [PortSpec]) {
        let one = [PortSpec("in")]
        let out = [PortSpec("out")]
        switch kind {
        case .sleep: return (one, out)
        case .after, .rngU64:
            return ([PortSpec("trigger", optional: true)], [PortSpec("out", kind == .rngU64 ? .uint : .any)])
        case .any:
            return (spec.inputs.keys.sorted().map { PortSpec($0, group: "any") }, out)
        case .deadlineMatch:
            return (spec.inputs.keys.sorted().map { PortSpec($0, group: "any") }, [PortSpec("matched"), PortSpec("late")])
        case .incrMetric: return ([PortSpec("in", optional: true)], out)
        case .record, .limitAcquire, .limitRelease: return (one, out)
        case .holdStash, .serializeEnqueue, .emit, .wireSend, .reply: return (one, [])
        case .holdFlush: return ([PortSpec("trigger")], [PortSpec("out", .list)])
        case .serializeDequeue: return ([PortSpec("trigger")], out)
        case .wireCall:
            // A call to a remote op with several inputs binds them by the remote port names.
            let names = spec.inputs.keys.sorted()
            if names.isEmpty || names == ["in"] { return (one, out) }
            return (names.map { PortSpec($0) }, out)
        }
    }

    /// Converts the spec's parameters.
    static func make(_ kind: SyscallKind, spec: OpSpec) throws(ProgramError) -> SyscallConfig {
        let p = Params(spec: spec)
        switch kind {
        case .sleep: return .sleep(try p.duration("delayMs"))
        case .after: return .after(try p.duration("delayMs"), spec.params["value"] ?? .unit)
        case .any:
            let scope: AnyScope
            switch try p.string("scope", default: "execution") {
            case "execution": scope = .execution
            case "node":
                let window: Duration = spec.params["windowMs"] == nil ? .seconds(1) : try p.duration("windowMs")
                scope = .node(window: window)
            case let other:
                throw .invalidParameter(op: spec.name, parameter: "scope", problem: "`\(other)` is neither `execution` nor `node`")
            }
            return .any(group: try p.string("group", default: spec.name), scope: scope)
        case .deadlineMatch: return .deadlineMatch(within: try p.duration("withinMs"))
        case .rngU64: return .rngU64
        case .incrMetric: return .incrMetric(name: try p.string("name"), by: try p.int("by", default: 1))
        case .record: return .record(name: try p.string("name"))
        case .holdStash: return .holdStash(name: try p.string("name"))
        case .holdFlush: return .holdFlush(name: try p.string("name"))
        case .serializeEnqueue: return .serializeEnqueue(name: try p.string("name"))
        case .serializeDequeue: return .serializeDequeue(name: try p.string("name"))
        case .limitAcquire:
            let max = try p.int("max")
            guard max > 0 else { throw .invalidParameter(op: spec.name, parameter: "max", problem: "must be at least 1") }
            return .limitAcquire(name: try p.string("name"), max: Int(max))
        case .limitRelease: return .limitRelease(name: try p.string("name"))
        case .emit: return .emit(event: try p.string("event", default: spec.name))
        case .wireCall:
            let target: WireTarget
            switch (spec.params["site"]?.stringValue, spec.params["op"]?.stringValue) {
            case (let s?, nil): target = .site(s)
            case (nil, let o?): target = .op(o)
            default:
                throw .invalidParameter(op: spec.name, parameter: "site/op", problem: "give exactly one of `site` or `op` as a string")
            }
            let timeout: Duration? = spec.params["timeoutMs"] == nil ? nil : try p.duration("timeoutMs")
            var chain: ChainHop?
            if let c = spec.params["chain"]?.stringValue {
                chain = ChainHop(chain: ChainHop.chainID(targets: c), hop: UInt8(clamping: try p.int("hop", default: 0)))
            }
            let names = spec.inputs.keys.sorted()
            var ports: [String]? = nil
            if !(names.isEmpty || names == ["in"]) {
                guard case .op = target else {
                    throw .invalidParameter(op: spec.name, parameter: "site",
                                            problem: "a call to a remote site carries one value: bind only the input `in`")
                }
                ports = names
            }
            return .wireCall(peer: try p.string("peer"), target: target, timeout: timeout, chain: chain, ports: ports)
        case .wireSend: return .wireSend(peer: try p.string("peer"), site: try p.string("site"))
        case .reply: return .reply
        }
    }
}

/// Reads op parameters with errors that name the op and the parameter.
struct Params {
    let spec: OpSpec

    func string(_ key: String, default value: String? = nil) throws(ProgramError) -> String {
        guard let v = spec.params[key] else {
            if let value { return value }
            throw .invalidParameter(op: spec.name, parameter: key, problem: "missing (a string is required)")
        }
        guard case .string(let s) = v, !s.isEmpty else {
            throw .invalidParameter(op: spec.name, parameter: key, problem: "expected a non-empty string, got \(v)")
        }
        return s
    }

    func int(_ key: String, default value: Int64? = nil) throws(ProgramError) -> Int64 {
        guard let v = spec.params[key] else {
            if let value { return value }
            throw .invalidParameter(op: spec.name, parameter: key, problem: "missing (an integer is required)")
        }
        guard let i = v.intValue else {
            throw .invalidParameter(op: spec.name, parameter: key, problem: "expected an integer, got \(v)")
        }
        return i
    }

    /// A duration given in milliseconds (integer or fractional).
    func duration(_ key: String) throws(ProgramError) -> Duration {
        let ms: Double
        switch spec.params[key] {
        case .int(let i)?: ms = Double(i)
        case .uint(let u)?: ms = Double(u)
        case .double(let d)?: ms = d
        case nil: throw .invalidParameter(op: spec.name, parameter: key, problem: "missing (milliseconds are required)")
        case let v?: throw .invalidParameter(op: spec.name, parameter: key, problem: "expected milliseconds, got \(v)")
        }
        guard ms.isFinite, ms >= 0, ms < 1e12 else {
            throw .invalidParameter(op: spec.name, parameter: key, problem: "\(ms) ms is not a usable duration")
        }
        return .nanoseconds(Int64(ms * 1_000_000))
    }
}
