
#if canImport(Glibc)
import Glibc
import SpindleSupport
#elseif canImport(Darwin)
import Darwin
#endif

extension SpindleThread {
    /// Starts a pool thread; the system's refusal becomes `TaskletError.invalidConfiguration`.
    static func startPoolThread(name: String, _ body: @escaping @Sendable () -> Void) throws(TaskletError) -> SpindleThread {
        do {
            return try start(name: name, body)
        } catch {
            throw .invalidConfiguration("\(error)")
        }
    }
}

/// The thread-specific key whose value is the innermost `LaneOwnership` of this thread.
@usableFromInline
let laneOwnerKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()

/// One link of "this thread runs a lane of pool P" (or "prepares a launch of pool P": its
/// scratch factory runs) — a chain, because a lane of one pool may launch on another. Lane
/// threads hold one for life; a coordinator holds one on its stack for the duration of its
/// launch, and a scratch factory while it runs.
@usableFromInline
struct LaneOwnership {
    var pool: UnsafeMutableRawPointer
    var outer: UnsafeMutableRawPointer?
    /// Whether this link is a scratch factory's (not a lane's).
    var factory = false

    init(pool: UnsafeMutableRawPointer, outer: UnsafeMutableRawPointer?, factory: Bool = false) {
        self.pool = pool
        self.outer = outer
        self.factory = factory
    }

    /// What the calling thread is doing for `pool`, if anything: running one of its lanes, or
    /// its scratch factory (the innermost link that names the pool decides).
    @usableFromInline
    enum Role { case lane, factory }

    @usableFromInline
    static func role(of pool: UnsafeMutableRawPointer) -> Role? {
        var link = pthread_getspecific(laneOwnerKey)
        while let current = link {
            let ownership = current.assumingMemoryBound(to: LaneOwnership.self).pointee
            if ownership.pool == pool { return ownership.factory ? .factory : .lane }
            link = ownership.outer
        }
        return nil
    }

    /// Whether the calling thread currently runs a lane (coordinator or data lane) of `pool`.
    static func callerRunsLane(of pool: UnsafeMutableRawPointer) -> Bool {
        role(of: pool) == .lane
    }
}
