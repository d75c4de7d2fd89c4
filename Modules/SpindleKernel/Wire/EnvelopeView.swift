/// An envelope whose payload is borrowed: the header fields by value, the payload as a pointer
/// into a buffer someone else owns (a transport's read buffer, or an `Envelope`'s array).
///
/// A view is valid only during the call it is passed to: do not store it or its `payload`
/// pointer, and do not let them escape the closure. Read the fields, process the payload in
/// place, or take `envelope` for an owned copy. Receivers that want zero-copy delivery install
/// a `ConnectionHandler(onEnvelopeView:onClose:)`; SpindleTCP then decodes frames straight out
/// of its read buffer without allocating per message.
///
/// ```swift
/// conn.start(ConnectionHandler(onEnvelopeView: { view in
///     if view.kind == 7 { total += view.payload.count }      // no copy, no allocation
///     else { keep(view.envelope) }                           // owned copy when needed
/// }, onClose: { _ in }))
/// ```
public struct EnvelopeView {
    public var protocolTag: ProtocolTag
    public var kind: UInt16
    public var flags: EnvelopeFlags
    public var source: NodeID?
    public var destination: NodeID?
    public var correlation: UInt64
    public var sequence: UInt64
    public var stamp: HLCTimestamp
    public var deadlineBudgetNanos: UInt64
    /// The payload bytes, valid only until the call that received this view returns.
    public var payload: UnsafeRawBufferPointer

    public init(protocolTag: ProtocolTag, kind: UInt16, flags: EnvelopeFlags = [],
                source: NodeID? = nil, destination: NodeID? = nil,
                correlation: UInt64 = 0, sequence: UInt64 = 0, stamp: HLCTimestamp = .zero,
                deadlineBudgetNanos: UInt64 = 0, payload: UnsafeRawBufferPointer) {
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

    /// An owned `Envelope` with a copy of the payload.
    ///
    /// Inlined into its callers, which then build the envelope where they keep it (an array
    /// element, a result): returned from a call, it was written one field at a time and copied
    /// on at once in wider moves, which stalls store-to-load forwarding per envelope.
    @inlinable @inline(__always)
    public var envelope: Envelope { envelope(removing: []) }

    /// `envelope` with `removed` cleared from its flags, set as it is built (a flag cleared
    /// afterwards made callers copy the whole envelope again, stalling as above).
    @inlinable @inline(__always)
    func envelope(removing removed: EnvelopeFlags) -> Envelope {
        var e = Envelope(protocolTag: protocolTag, kind: kind, flags: flags.subtracting(removed), correlation: correlation,
                         sequence: sequence, stamp: stamp, deadlineBudgetNanos: deadlineBudgetNanos,
                         payload: payload.isEmpty ? [] : Array(payload.assumingMemoryBound(to: UInt8.self)))
        // The identifiers are copied field by field: passed whole, each optional went through
        // a stack temporary written and read back in differently sized pieces, which stalls
        // store-to-load forwarding several times per envelope.
        if let source { e.source = source }
        if let destination { e.destination = destination }
        return e
    }
}

// A view holds a pointer that is valid only on the thread and during the call that received
// it: it must not cross to another task or thread.
@available(*, unavailable)
extension EnvelopeView: Sendable {}

extension Envelope {
    /// Calls `body` with a view of this envelope whose payload borrows this envelope's bytes.
    public func withView<R>(_ body: (EnvelopeView) -> R) -> R {
        payload.withUnsafeBytes { raw in
            body(EnvelopeView(protocolTag: protocolTag, kind: kind, flags: flags, source: source,
                                  destination: destination, correlation: correlation, sequence: sequence,
                                  stamp: stamp, deadlineBudgetNanos: deadlineBudgetNanos, payload: raw))
        }
    }
}
