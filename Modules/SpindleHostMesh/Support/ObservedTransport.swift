import SpindleKernel
import Synchronization

/// A transport in front of another that tells its owner how connecting goes, and can cut the
/// connections it made: what a control channel needs from below its reliable link.
///
/// A reliable link retries failed connects forever; an attach or a one-shot query wants the
/// first failure, typed (unreachable, refused authentication), to fail fast. Connections are
/// the underlying transport's own objects, so nothing on the data path changes.
final class ObservedTransport: Transport {
    private struct State {
        var connections: [ObjectIdentifier: WeakConnection] = [:]
    }
    private struct WeakConnection {
        weak var connection: (any TransportConnection)?
    }

    let base: any Transport
    private let onConnectFailure: @Sendable (TransportError) -> Void
    private let state = Mutex(State())

    init(_ base: any Transport, onConnectFailure: @escaping @Sendable (TransportError) -> Void) {
        self.base = base
        self.onConnectFailure = onConnectFailure
    }

    func listen(on address: Address,
                accept: @escaping @Sendable (any TransportConnection) -> Void) async throws(TransportError) -> any TransportListener {
        try await base.listen(on: address, accept: accept)
    }

    func connect(to address: Address) async throws(TransportError) -> any TransportConnection {
        do {
            let c = try await base.connect(to: address)
            state.withLock { s in
                s.connections = s.connections.filter { $0.value.connection != nil }
                s.connections[ObjectIdentifier(c)] = WeakConnection(connection: c)
            }
            return c
        } catch {
            onConnectFailure(error)
            throw error
        }
    }

    /// Closes every open connection made through this transport (the link above reconnects).
    func cutConnections() {
        let open = state.withLock { s in s.connections.values.compactMap(\.connection) }
        for c in open { c.close() }
    }

    /// Does nothing: the underlying transport belongs to someone else.
    func shutdown() async {}
}
