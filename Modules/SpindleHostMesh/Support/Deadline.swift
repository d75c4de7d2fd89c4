import Synchronization

/// Resumes a continuation at most once, whichever of several racers gets there first.
final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, Never>?>

    init(_ c: CheckedContinuation<T, Never>) { continuation = Mutex(c) }

    /// Resumes with `value`; false if someone else already did.
    @discardableResult
    func resume(_ value: T) -> Bool {
        guard let c = continuation.withLock({ c -> CheckedContinuation<T, Never>? in
            defer { c = nil }
            return c
        }) else { return false }
        c.resume(returning: value)
        return true
    }
}

/// Runs `body` and returns its value, or nil when `limit` passes first. `body` cannot be
/// cancelled (a transport connect, say): a value that arrives late goes to `late` so it can
/// be cleaned up (a late connection closed) instead of leaking.
func withDeadline<T: Sendable>(_ limit: Duration,
                               late: @escaping @Sendable (T) -> Void,
                               _ body: @escaping @Sendable () async -> T) async -> T? {
    await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
        let once = ResumeOnce(c)
        let timer = Task {
            do { try await Task.sleep(for: limit) } catch { return }
            once.resume(nil)
        }
        Task {
            let v = await body()
            if once.resume(v) { timer.cancel() } else { late(v) }
        }
    }
}
