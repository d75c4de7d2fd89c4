/// Options of a ``StreamChannel``: write-queue watermarks (bytes) and TCP_NODELAY.
///
/// A channel turns unwritable (``StreamChannel/isWritable`` false) once more than
/// `highWatermark` bytes are queued and not yet taken by the kernel, and writable again once
/// the queue has drained to `lowWatermark` or below.
public struct StreamConfiguration: Sendable, Equatable {
    public var highWatermark: Int = 1 << 20
    public var lowWatermark: Int = 256 << 10
    /// Sets TCP_NODELAY on TCP streams (request/response traffic wants it).
    public var noDelay: Bool = true

    public init(highWatermark: Int = 1 << 20, lowWatermark: Int = 256 << 10, noDelay: Bool = true) {
        self.highWatermark = highWatermark
        self.lowWatermark = min(lowWatermark, highWatermark)
        self.noDelay = noDelay
    }
}
