import Synchronization

/// A hybrid logical clock stamp: physical nanoseconds plus a logical counter.
///
/// Stamps order causally related events across nodes: if event a happened before event b
/// (same node, or a's message was received before b), then `stamp(a) < stamp(b)`.
public struct HLCTimestamp: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// Physical part: the largest wall time seen, in nanoseconds since the epoch.
    public var physical: UInt64
    /// Logical part: orders events that share a physical part.
    public var logical: UInt32

    public init(physical: UInt64, logical: UInt32) {
        self.physical = physical
        self.logical = logical
    }

    public static let zero = HLCTimestamp(physical: 0, logical: 0)

    public static func < (a: Self, b: Self) -> Bool {
        (a.physical, a.logical) < (b.physical, b.logical)
    }

    public var description: String { "\(physical).\(logical)" }
}

/// A hybrid logical clock (Kulkarni et al.): close to wall time, monotonic even when wall time
/// steps back, and respecting causality through the send/receive rules. Thread-safe.
public final class HybridLogicalClock: Sendable {
    private let clock: any SpindleClock
    private let last = Mutex(HLCTimestamp.zero)

    public init(clock: any SpindleClock) {
        self.clock = clock
    }

    /// The stamp for a local or send event: strictly greater than every stamp this clock has
    /// issued or received.
    public func tick() -> HLCTimestamp {
        let wall = clock.wallNanoseconds()
        return last.withLock { l in
            if wall > l.physical {
                l = HLCTimestamp(physical: wall, logical: 0)
            } else {
                l.logical &+= 1
                if l.logical == 0 { l.physical &+= 1 }   // counter wrapped: borrow a nanosecond
            }
            return l
        }
    }

    /// Merges a stamp received from another node and returns the stamp of the receive event,
    /// which is strictly greater than both `remote` and everything issued here before.
    @discardableResult
    public func receive(_ remote: HLCTimestamp) -> HLCTimestamp {
        let wall = clock.wallNanoseconds()
        return last.withLock { l in
            var physical = max(wall, l.physical, remote.physical)
            var logical: UInt32 = 0
            var base: UInt32? = nil
            if physical == l.physical && physical == remote.physical {
                base = max(l.logical, remote.logical)
            } else if physical == l.physical {
                base = l.logical
            } else if physical == remote.physical {
                base = remote.logical
            }
            if let base {
                if base == .max {
                    physical &+= 1   // counter exhausted: borrow a nanosecond
                } else {
                    logical = base + 1
                }
            }
            let p = physical
            l = HLCTimestamp(physical: p, logical: logical)
            return l
        }
    }

    /// Merges a remote stamp like `receive(_:)`, unless its physical part is more than
    /// `maximumDrift` ahead of this node's wall clock: such a stamp (a peer with a badly wrong
    /// clock) would drag every later local stamp forward, so it is refused and the clock is
    /// left unchanged.
    /// - Throws: `HLCDriftError` naming the remote stamp, the local wall time and the bound.
    @discardableResult
    public func receive(_ remote: HLCTimestamp, maximumDrift: Duration) throws(HLCDriftError) -> HLCTimestamp {
        let wall = clock.wallNanoseconds()
        let bound = UInt64(max(0, maximumDrift.nanosecondsClamped))
        let (limit, overflow) = wall.addingReportingOverflow(bound)
        if !overflow && remote.physical > limit {
            throw HLCDriftError(remote: remote, localWall: wall, maximumDrift: maximumDrift)
        }
        return receive(remote)
    }

    /// The last stamp issued or received (without advancing).
    public var current: HLCTimestamp { last.withLock { $0 } }
}

/// A remote stamp too far ahead of the local wall clock (see
/// `HybridLogicalClock.receive(_:maximumDrift:)`).
public struct HLCDriftError: Error, Sendable, Equatable, CustomStringConvertible {
    public var remote: HLCTimestamp
    /// The local wall time when the stamp arrived, in nanoseconds since the epoch.
    public var localWall: UInt64
    public var maximumDrift: Duration

    public init(remote: HLCTimestamp, localWall: UInt64, maximumDrift: Duration) {
        self.remote = remote
        self.localWall = localWall
        self.maximumDrift = maximumDrift
    }

    public var description: String {
        "remote HLC stamp \(remote) is \(remote.physical &- localWall) ns ahead of the local wall clock "
            + "(\(localWall)); the bound is \(maximumDrift)"
    }
}
