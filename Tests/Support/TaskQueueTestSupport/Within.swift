import Synchronization

/// The body did not finish within its time limit.
public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public var limit: Duration
    public var description: String { "\(what) did not finish within \(limit)" }
}

/// The first result delivered, and who waits for it.
private final class FirstResult<T: Sendable>: Sendable {
    private let state = Mutex<(Result<T, any Error>?, CheckedContinuation<Result<T, any Error>, Never>?)>((nil, nil))

    func deliver(_ r: Result<T, any Error>) {
        let c = state.withLock { s -> CheckedContinuation<Result<T, any Error>, Never>? in
            if s.0 != nil { return nil }
            s.0 = r
            defer { s.1 = nil }
            return s.1
        }
        c?.resume(returning: r)
    }

    func wait() async -> Result<T, any Error> {
        await withCheckedContinuation { (c: CheckedContinuation<Result<T, any Error>, Never>) in
            let ready = state.withLock { s -> Result<T, any Error>? in
                if let r = s.0 { return r }
                s.1 = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

/// Runs `body` and returns its value, or throws `TimedOut` after `limit` — without waiting
/// for a body that hangs (it is left running), so a hang fails the test instead of stalling
/// the run.
public func within<T: Sendable>(_ limit: Duration, _ what: String,
                                _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let first = FirstResult<T>()
    Task {
        do { first.deliver(.success(try await body())) } catch { first.deliver(.failure(error)) }
    }
    let timer = Task {
        try? await Task.sleep(for: limit)
        if !Task.isCancelled { first.deliver(.failure(TimedOut(what: what, limit: limit))) }
    }
    let result = await first.wait()
    timer.cancel()
    return try result.get()
}
