/// Options of a ``StreamChannel``: write-queue watermarks (bytes), TCP_NODELAY, and the
/// liveness settings that make a dead peer, a connect that hangs and a close that cannot
/// finish end in a typed error instead of waiting forever.
///
/// A channel turns unwritable (``StreamChannel/isWritable`` false) once more than
/// `highWatermark` bytes are queued and not yet taken by the kernel, and writable again once
/// the queue has drained to `lowWatermark` or below.
///
/// The defaults notice a dead TCP peer within 10 s: an idle connection is probed after 2 s,
/// then every second, and dropped after 3 unanswered probes (5 s); data the peer has not
/// acknowledged for 10 s (`TCP_USER_TIMEOUT`) fails the connection with ETIMEDOUT.
public struct StreamConfiguration: Sendable, Equatable {
    public var highWatermark: Int = 1 << 20
    public var lowWatermark: Int = 256 << 10
    /// Sets TCP_NODELAY on TCP streams (request/response traffic wants it).
    public var noDelay: Bool = true
    /// TCP keepalive probing of idle connections (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL,
    /// TCP_KEEPCNT), set on every TCP connection, accepted or connected; nil leaves the
    /// system's setting (normally off).
    public var keepalive: Keepalive? = Keepalive()
    /// `TCP_USER_TIMEOUT`: how long written data may stay unacknowledged by the peer before
    /// the kernel drops the connection (the channel then closes with ETIMEDOUT). Whole
    /// milliseconds, rounded up; nil leaves the system's setting (minutes of retransmissions).
    public var userTimeout: Duration? = .seconds(10)
    /// How long ``StreamChannel/connect(on:to:configuration:)`` may take, name resolution
    /// included, before it fails with ETIMEDOUT naming the address and leaves no handle
    /// behind; nil waits as long as the kernel does.
    public var connectTimeout: Duration? = .seconds(5)
    /// How long a graceful ``StreamChannel/close()`` may wait for its queued writes to reach the
    /// kernel. After it the channel is closed hard (a TCP socket is reset, so unsent data is
    /// discarded) and `onClose` gets an `ECLOSEDEADLINE` error naming the bytes left unwritten;
    /// nil waits forever.
    public var closeDeadline: Duration? = .seconds(10)

    /// TCP keepalive settings. Each duration is rounded up to whole seconds (at least 1, the
    /// kernel's unit) and capped at 32767 s; `probeCount` is clamped to 1...127.
    public struct Keepalive: Sendable, Equatable {
        /// Idle time before the first probe (TCP_KEEPIDLE).
        public var idle: Duration = .seconds(2)
        /// Time between unanswered probes (TCP_KEEPINTVL).
        public var interval: Duration = .seconds(1)
        /// Unanswered probes after which the connection is dropped (TCP_KEEPCNT).
        public var probeCount: Int = 3

        public init(idle: Duration = .seconds(2), interval: Duration = .seconds(1), probeCount: Int = 3) {
            self.idle = idle
            self.interval = interval
            self.probeCount = probeCount
        }
    }

    public init(highWatermark: Int = 1 << 20, lowWatermark: Int = 256 << 10, noDelay: Bool = true,
                keepalive: Keepalive? = Keepalive(), userTimeout: Duration? = .seconds(10),
                connectTimeout: Duration? = .seconds(5), closeDeadline: Duration? = .seconds(10)) {
        self.highWatermark = highWatermark
        self.lowWatermark = min(lowWatermark, highWatermark)
        self.noDelay = noDelay
        self.keepalive = keepalive
        self.userTimeout = userTimeout
        self.connectTimeout = connectTimeout
        self.closeDeadline = closeDeadline
    }
}

extension StreamConfiguration.Keepalive {
    /// The values given to setsockopt: (TCP_KEEPIDLE s, TCP_KEEPINTVL s, TCP_KEEPCNT).
    var socketValues: (idle: Int32, interval: Int32, count: Int32) {
        (Self.seconds(idle), Self.seconds(interval), Int32(min(max(probeCount, 1), 127)))
    }

    private static func seconds(_ d: Duration) -> Int32 {
        let ms = LoopTimer.milliseconds(d)
        return Int32(min(max((ms + 999) / 1000, 1), 32767))
    }
}

extension StreamConfiguration {
    /// `userTimeout` in milliseconds for setsockopt (rounded up, capped at Int32.max).
    var userTimeoutMilliseconds: Int32? {
        userTimeout.map { Int32(min(LoopTimer.milliseconds($0), UInt64(Int32.max))) }
    }
}
