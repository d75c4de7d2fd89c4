/// The unit every transport carries: routing header plus opaque payload bytes.
///
/// On a byte stream an envelope travels as one frame (see `FrameCodec` and
/// docs/wire-protocol.md). In process it is passed as a value; its payload array is shared,
/// not copied.
public struct Envelope: Sendable, Equatable {
    /// Which Spindle protocol the envelope belongs to (see `ProtocolTag`).
    public var protocolTag: ProtocolTag
    /// The message kind inside that protocol.
    public var kind: UInt16
    public var flags: EnvelopeFlags
    /// The sending endpoint.
    public var source: NodeID?
    /// The endpoint it is meant for.
    public var destination: NodeID?
    /// Pairs a reply with its request (0 = none).
    public var correlation: UInt64
    /// Position in a reliable-link session, or an application sequence (0 = none).
    public var sequence: UInt64
    /// The sender's hybrid logical clock when it sent the envelope.
    public var stamp: HLCTimestamp
    /// How much of the request's deadline remained when it was sent, in nanoseconds (0 = no
    /// deadline). Budgets, not absolute times, survive clocks that disagree across machines.
    public var deadlineBudgetNanos: UInt64
    public var payload: [UInt8]

    public init(
        protocolTag: ProtocolTag,
        kind: UInt16,
        flags: EnvelopeFlags = [],
        source: NodeID? = nil,
        destination: NodeID? = nil,
        correlation: UInt64 = 0,
        sequence: UInt64 = 0,
        stamp: HLCTimestamp = .zero,
        deadlineBudgetNanos: UInt64 = 0,
        payload: [UInt8] = []
    ) {
        self.protocolTag = protocolTag
        self.kind = kind
        self.flags = flags
        self.source = source
        self.destination = destination
        self.correlation = correlation
        self.sequence = sequence
        self.stamp = stamp
        self.deadlineBudgetNanos = deadlineBudgetNanos
        self.payload = payload
    }

    /// The remaining deadline budget as a `Duration`, or nil when there is none.
    public var deadlineBudget: Duration? {
        get { deadlineBudgetNanos == 0 ? nil : .nanoseconds(Int64(clamping: deadlineBudgetNanos)) }
        set {
            guard let d = newValue else { deadlineBudgetNanos = 0; return }
            deadlineBudgetNanos = UInt64(max(1, d.nanosecondsClamped))
        }
    }
}

/// Names the protocol an envelope belongs to, so one connection can carry several.
public struct ProtocolTag: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Transport-level control (handshakes, keep-alives).
    public static let control = ProtocolTag(rawValue: 0)
    /// Reliable-link data and acknowledgements.
    public static let reliable = ProtocolTag(rawValue: 1)
    /// Node engine wire ops.
    public static let nodeEngine = ProtocolTag(rawValue: 2)
    /// Task queue master ⇄ worker.
    public static let taskQueue = ProtocolTag(rawValue: 3)
    /// Host mesh client ⇄ agent ⇄ proc.
    public static let hostMesh = ProtocolTag(rawValue: 4)
    /// Distributed runner coordinator ⇄ shard.
    public static let runner = ProtocolTag(rawValue: 5)
    /// First tag free for applications.
    public static let application = ProtocolTag(rawValue: 0x100)

    public var description: String {
        switch self {
        case .control: return "control"
        case .reliable: return "reliable"
        case .nodeEngine: return "node-engine"
        case .taskQueue: return "task-queue"
        case .hostMesh: return "host-mesh"
        case .runner: return "runner"
        default: return "protocol-\(rawValue)"
        }
    }
}

/// Per-envelope flag bits.
public struct EnvelopeFlags: OptionSet, Hashable, Sendable, Codable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The envelope answers a request (its correlation names the request).
    public static let response = EnvelopeFlags(rawValue: 1 << 0)
    /// The envelope reports an error; its payload describes it.
    public static let error = EnvelopeFlags(rawValue: 1 << 1)
    /// No reply is expected.
    public static let oneWay = EnvelopeFlags(rawValue: 1 << 2)
}
