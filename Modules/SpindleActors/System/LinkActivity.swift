import SpindleKernel

import Synchronization

/// Counts the background tasks a system's reliable links start (their connect tasks), so a
/// deterministic test can wait until none runs before it takes its next step.
///
/// Wherever the system calls into a link in a way that may start a connect task (creating
/// the link, ticking it), it binds a fresh token as a task local; a task the link starts
/// copies the binding, and the token is released when its last holder — the binding scope
/// or that task — ends. `live` counts the tokens not yet released.
final class LinkActivity: Sendable {
    private let count = Atomic<Int>(0)

    var live: Int { count.load(ordering: .acquiring) }

    /// Runs `body` with a fresh token bound.
    func tracking<R>(_ body: () throws -> R) rethrows -> R {
        count.add(1, ordering: .relaxed)
        return try LinkActivityToken.$current.withValue(LinkActivityToken(self)) { try body() }
    }

    fileprivate func released() { count.subtract(1, ordering: .releasing) }
}

/// One tracked scope (see `LinkActivity`).
final class LinkActivityToken: Sendable {
    @TaskLocal static var current: LinkActivityToken?
    private let activity: LinkActivity

    fileprivate init(_ activity: LinkActivity) { self.activity = activity }

    deinit { activity.released() }
}

/// A transport that reports how each connect attempt of one outbound link ended, so the
/// system can declare a peer lost after `connectAttemptsBeforeLost` refusals in a row.
/// Everything else is the wrapped transport's.
final class ConnectObservingTransport: Transport {
    private let inner: any Transport
    private let observe: @Sendable (Result<Void, TransportError>) -> Void

    init(_ inner: any Transport, observe: @escaping @Sendable (Result<Void, TransportError>) -> Void) {
        self.inner = inner
        self.observe = observe
    }

    func listen(on address: Address,
                accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        try await inner.listen(on: address, accept: accept)
    }

    func connect(to address: Address) async throws(TransportError) -> any TransportConnection {
        do {
            let c = try await inner.connect(to: address)
            observe(.success(()))
            return c
        } catch {
            observe(.failure(error))
            throw error
        }
    }

    /// The wrapped transport belongs to the system's owner, who shuts it down.
    func shutdown() async {}
}
