import CSpindleSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread the system refused to start.
package struct ThreadStartError: Error, Sendable, CustomStringConvertible {
    /// The thread's name.
    package var name: String
    /// The `pthread_create` error number.
    package var code: Int32

    package var description: String {
        "could not start thread \"\(name)\": \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// An OS thread running one Swift closure: the one thread launcher of the runtime (event
/// loops, tasklet pool lanes, task-queue worker threads, blocking helpers).
///
/// `@unchecked Sendable`: a pthread handle is a plain identifier, valid on any thread; `join`
/// or `detach` is called once by the owner.
@usableFromInline
package struct SpindleThread: @unchecked Sendable {
    #if os(Linux)
    private let handle: pthread_t
    #else
    private let handle: pthread_t?
    #endif

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts a thread named `name` (the first 15 bytes show in `top -H`, `ps -L` and
    /// debuggers) running `body`.
    /// - Parameters:
    ///   - name: the thread's name.
    ///   - stackSize: its stack in bytes; nil for the system's default.
    ///   - body: what it runs; the thread ends when `body` returns.
    /// - Throws: `ThreadStartError` naming the thread and the errno when the system refuses.
    package static func start(name: String, stackSize: Int? = nil,
                              _ body: @escaping @Sendable () -> Void) throws(ThreadStartError) -> SpindleThread {
        let box = Unmanaged.passRetained(Body {
            SpindleThread.nameCurrent(name)
            body()
        }).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if let stackSize {
            let rc = pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN)))
            if rc != 0 {
                Unmanaged<Body>.fromOpaque(box).release()
                throw ThreadStartError(name: name, code: rc)
            }
        }
        #if os(Linux)
        var handle = pthread_t()
        #else
        var handle: pthread_t? = nil
        #endif
        let rc = pthread_create(&handle, &attributes, { raw in
            let pointer: UnsafeMutableRawPointer? = raw
            guard let pointer else { return nil }
            Unmanaged<Body>.fromOpaque(pointer).takeRetainedValue().run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(box).release()
            throw ThreadStartError(name: name, code: rc)
        }
        return SpindleThread(handle: handle)
    }

    /// Starts a thread that nobody joins: its resources go back to the system when `body`
    /// returns.
    package static func detached(name: String, _ body: @escaping @Sendable () -> Void) throws(ThreadStartError) {
        try start(name: name, body).detach()
    }

    /// Waits for the thread to finish.
    package func join() {
        #if os(Linux)
        pthread_join(handle, nil)
        #else
        if let handle { pthread_join(handle, nil) }
        #endif
    }

    /// Lets the thread finish on its own, releasing its resources when it does.
    package func detach() {
        #if os(Linux)
        pthread_detach(handle)
        #else
        if let handle { pthread_detach(handle) }
        #endif
    }

    /// The calling thread's identity, for checks that something runs on its own thread.
    @inlinable
    package static var currentID: UInt {
        #if os(Linux)
        return UInt(pthread_self())
        #else
        return UInt(bitPattern: pthread_self())
        #endif
    }

    /// Names the calling thread, best effort.
    package static func nameCurrent(_ name: String) {
        // In C: Glibc's Swift module does not export pthread_setname_np, and writing
        // /proc/thread-self/comm would hold a descriptor for a moment, which a process at its
        // descriptor limit sees fail or come and go.
        _ = spindle_name_current_thread(name)
    }
}
