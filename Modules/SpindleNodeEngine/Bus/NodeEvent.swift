import SpindleKernel

/// Why an op failed.
public enum OpFailureReason: Error, Sendable, Equatable, CustomStringConvertible {
    /// The component or a completion handle reported a failure (detail truncated to the cap).
    case failed(String)
    /// The op's deadline passed before it completed.
    case timeout
    /// Too many async ops were pending; the op was refused before it ran.
    case cooldown
    /// The remote peer answered with an error.
    case remote(String)
    /// The peer cannot be used now (unknown, blocked, backed off, at its concurrency limit).
    case peerUnavailable(String)
    /// A bounded structure (timer heap, queue, request table) had no room.
    case capacity(String)
    /// The peer was declared down (liveness bound, failure detector, repeated failures); its
    /// calls fail at once, and new ones until it is heard from again.
    case peerDown(NodeID)
    /// The peer is overloaded: it refused this request with a backoff notice.
    case overloaded(NodeID)
    /// What the call sent cannot reach the peer (no route, link closed, delivery timeout).
    case unreachable(NodeID, String)
    /// The execution was cancelled.
    case cancelled
    /// The component returned a command id that another op is still waiting on.
    case commandInUse(CommandID)

    public var description: String {
        switch self {
        case .failed(let d): return "failed: \(d)"
        case .timeout: return "timeout"
        case .cooldown: return "cooldown: too many pending async ops"
        case .remote(let d): return "remote error: \(d)"
        case .peerUnavailable(let d): return "peer unavailable: \(d)"
        case .capacity(let d): return "capacity: \(d)"
        case .peerDown(let p): return "peer down: \(p)"
        case .overloaded(let p): return "peer overloaded: \(p) sent a backoff notice"
        case .unreachable(let p, let why): return "peer unreachable: \(p): \(why)"
        case .cancelled: return "cancelled"
        case .commandInUse(let c): return "command \(c) is already pending for another op"
        }
    }
}

/// One failed op: which op, in which execution, and why.
public struct OpFailure: Sendable, Equatable, CustomStringConvertible {
    public var op: String
    public var execution: ExecID
    public var reason: OpFailureReason

    public var description: String { "op `\(op)` in \(execution): \(reason)" }
}

/// The kinds of events on a node's bus (what programs can subscribe to).
public enum NodeEventKind: String, Sendable, Codable, CaseIterable, Hashable {
    case opFailed, ingressRejected, unknownCompletion, peerUp, peerDown, peerSuspected, peerTrusted
    case outboundDropped, duplicateDropped, backoffNoticeSent, inboundDroppedSilently
    case backoffNoticeReceived, inboundRejected, wireDecodeFailed, slotOverwritten
    case unknownResponse, executionFinished, peerUnreachable, undeliverable, peerEvicted
}

/// An event on a node's typed bus.
public enum NodeEvent: Sendable, Equatable, CustomStringConvertible {
    case opFailed(OpFailure)
    /// Ingress pushes refused since the last poll (`full` or `resultTooLarge`), by reason.
    case ingressRejected(reason: String, count: UInt64)
    /// A completion named a command that is not pending (already done, timed out, or never issued).
    case unknownCompletion(CommandID)
    case peerUp(NodeID)
    case peerDown(NodeID)
    case peerSuspected(NodeID)
    case peerTrusted(NodeID)
    /// The outbound queue was full; the oldest envelope (to `destination`) was dropped.
    case outboundDropped(destination: NodeID?)
    case duplicateDropped(source: NodeID, sequence: UInt64)
    /// This node was overloaded and told `peer` to back off.
    case backoffNoticeSent(peer: NodeID)
    /// This node was overloaded and dropped a message from `peer` without telling it.
    case inboundDroppedSilently(peer: NodeID)
    /// `peer` told this node to back off.
    case backoffNoticeReceived(peer: NodeID)
    /// A message was refused by policy (blocked peer) or named an unknown site or op.
    case inboundRejected(peer: NodeID?, reason: String)
    case wireDecodeFailed(peer: NodeID?, detail: String)
    /// A site was written while the op consuming it had not yet fired; the older value was lost.
    case slotOverwritten(op: String, port: String)
    /// A response matched no request in flight (late after a timeout, or duplicated).
    case unknownResponse(peer: NodeID?, correlation: UInt64)
    case executionFinished(ExecID)
    /// The host could not reach `peer` (a connect attempt failed).
    case peerUnreachable(peer: NodeID, reason: String)
    /// Envelopes to `peer` came back undelivered (`count` of them).
    case undeliverable(peer: NodeID?, count: Int, reason: String)
    /// `peer` was neither called nor heard from for the idle timeout: its state was dropped.
    case peerEvicted(NodeID)

    public var kind: NodeEventKind {
        switch self {
        case .opFailed: return .opFailed
        case .ingressRejected: return .ingressRejected
        case .unknownCompletion: return .unknownCompletion
        case .peerUp: return .peerUp
        case .peerDown: return .peerDown
        case .peerSuspected: return .peerSuspected
        case .peerTrusted: return .peerTrusted
        case .outboundDropped: return .outboundDropped
        case .duplicateDropped: return .duplicateDropped
        case .backoffNoticeSent: return .backoffNoticeSent
        case .inboundDroppedSilently: return .inboundDroppedSilently
        case .backoffNoticeReceived: return .backoffNoticeReceived
        case .inboundRejected: return .inboundRejected
        case .wireDecodeFailed: return .wireDecodeFailed
        case .slotOverwritten: return .slotOverwritten
        case .unknownResponse: return .unknownResponse
        case .executionFinished: return .executionFinished
        case .peerUnreachable: return .peerUnreachable
        case .undeliverable: return .undeliverable
        case .peerEvicted: return .peerEvicted
        }
    }

    public var description: String {
        switch self {
        case .opFailed(let f): return "opFailed(\(f))"
        case .ingressRejected(let r, let n): return "ingressRejected(\(r) x\(n))"
        case .unknownCompletion(let c): return "unknownCompletion(\(c))"
        case .peerUp(let p): return "peerUp(\(p))"
        case .peerDown(let p): return "peerDown(\(p))"
        case .peerSuspected(let p): return "peerSuspected(\(p))"
        case .peerTrusted(let p): return "peerTrusted(\(p))"
        case .outboundDropped(let d): return "outboundDropped(to \(d.map(\.description) ?? "nobody"))"
        case .duplicateDropped(let s, let q): return "duplicateDropped(\(s) #\(q))"
        case .backoffNoticeSent(let p): return "backoffNoticeSent(\(p))"
        case .inboundDroppedSilently(let p): return "inboundDroppedSilently(\(p))"
        case .backoffNoticeReceived(let p): return "backoffNoticeReceived(\(p))"
        case .inboundRejected(let p, let r): return "inboundRejected(\(p.map(\.description) ?? "?"): \(r))"
        case .wireDecodeFailed(let p, let d): return "wireDecodeFailed(\(p.map(\.description) ?? "?"): \(d))"
        case .slotOverwritten(let o, let p): return "slotOverwritten(\(o).\(p))"
        case .unknownResponse(let p, let c): return "unknownResponse(\(p.map(\.description) ?? "?") #\(c))"
        case .executionFinished(let e): return "executionFinished(\(e))"
        case .peerUnreachable(let p, let r): return "peerUnreachable(\(p): \(r))"
        case .undeliverable(let p, let n, let r): return "undeliverable(\(p.map(\.description) ?? "?") x\(n): \(r))"
        case .peerEvicted(let p): return "peerEvicted(\(p))"
        }
    }
}
