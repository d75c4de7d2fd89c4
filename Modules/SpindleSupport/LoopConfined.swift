import Synchronization

/// Something that runs code on one thread at a time and can say whether the caller is on it:
/// an event loop.
package protocol ConfinementDomain: AnyObject, Sendable {
    /// Whether the calling thread is the domain's.
    var isCurrentThread: Bool { get }
    /// The domain's name, for the message when the check fails.
    var confinementName: String { get }
}

/// A value used only on one event loop's thread. In debug builds every access checks the
/// thread once the value is bound to its loop, and traps naming the loop and the access site
/// when it is another; release builds check nothing.
///
/// `@unchecked Sendable`: the value is touched only on the domain's thread (checked in debug
/// builds), so no two threads ever use it at once; the domain reference is behind a mutex.
package final class LoopConfined<Value>: @unchecked Sendable {
    private struct WeakDomain {
        weak var value: (any ConfinementDomain)?
    }

    private var value: Value
    private let domain: Mutex<WeakDomain>

    /// - Parameters:
    ///   - value: the confined value.
    ///   - domain: its loop, or nil to bind it later (before its first use).
    package init(_ value: Value, on domain: (any ConfinementDomain)? = nil) {
        self.value = value
        self.domain = Mutex(WeakDomain(value: domain))
    }

    /// Names the loop the value belongs to, for a value made before its loop was known.
    package func bind(to domain: any ConfinementDomain) {
        self.domain.withLock { $0.value = domain }
    }

    /// Runs `body` with the value; on the domain's thread only.
    @inline(__always)
    package func withValue<R, E: Error>(file: StaticString = #fileID, line: UInt = #line,
                                        _ body: (inout Value) throws(E) -> R) throws(E) -> R {
        assert(checkThread(file: file, line: line))
        return try body(&value)
    }

    private func checkThread(file: StaticString, line: UInt) -> Bool {
        guard let owner = domain.withLock({ $0.value }) else { return true }
        if owner.isCurrentThread { return true }
        preconditionFailure("a value confined to \(owner.confinementName) was used on another thread", file: file, line: line)
    }
}
