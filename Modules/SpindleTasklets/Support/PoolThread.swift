#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A joinable pthread running one Swift closure (used for the pool's persistent threads).
struct PoolThread: @unchecked Sendable {
    // @unchecked Sendable: a pthread handle is a plain identifier, valid on any thread.
    #if os(Linux)
    let handle: pthread_t
    #else
    let handle: pthread_t?
    #endif

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts a thread named `name` (at most 15 bytes show) running `body`.
    /// - Throws: `TaskletError.invalidConfiguration` naming the errno if the system refuses.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(TaskletError) -> PoolThread {
        let box = Unmanaged.passRetained(Box {
            nameCurrentThread(name)
            body()
        }).toOpaque()
        #if os(Linux)
        var handle = pthread_t()
        #else
        var handle: pthread_t? = nil
        #endif
        let rc = pthread_create(&handle, nil, { raw in
            let pointer: UnsafeMutableRawPointer? = raw
            guard let pointer else { return nil }
            Unmanaged<Box>.fromOpaque(pointer).takeRetainedValue().body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw .invalidConfiguration("could not start a pool thread: \(String(cString: strerror(rc)))")
        }
        return PoolThread(handle: handle)
    }

    /// Waits for the thread to finish.
    func join() {
        #if os(Linux)
        pthread_join(handle, nil)
        #else
        if let handle { pthread_join(handle, nil) }
        #endif
    }

    /// Lets the thread finish on its own, releasing its resources when it does.
    func detach() {
        #if os(Linux)
        pthread_detach(handle)
        #else
        if let handle { pthread_detach(handle) }
        #endif
    }
}

/// Names the calling thread (shown by `top -H`, `ps -L`, debuggers), best effort.
private func nameCurrentThread(_ name: String) {
    #if os(Linux)
    // pthread_setname_np is not visible through Glibc's module; a thread may rename itself
    // by writing its own comm file.
    let fd = open("/proc/thread-self/comm", O_WRONLY)
    guard fd >= 0 else { return }
    var bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    #elseif canImport(Darwin)
    _ = pthread_setname_np(name)
    #endif
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

/// The calling thread's identity, for checks that a coordinator context is used on its own
/// thread.
@inlinable
func currentThreadID() -> UInt {
    #if os(Linux)
    return UInt(pthread_self())
    #else
    return UInt(bitPattern: pthread_self())
    #endif
}
