import Logging
import SpindleKernel
import Synchronization

/// Why a request on a control link got no reply.
public enum LinkFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The connection failed or closed; the transport's error.
    case transport(TransportError)
    /// No reply within the request's timeout.
    case timedOut(Duration)

    public var description: String {
        switch self {
        case .transport(let e): return e.description
        case .timedOut(let d): return "no reply within \(d)"
        }
    }
}

/// Host-mesh messages over one transport connection: correlated requests with timeouts,
/// replies, and one-way pushes.
///
/// Replies (envelopes with the `.response` flag) resume the request with the same
/// correlation; everything else goes to `onMessage` with its correlation (0 for pushes).
/// When the connection closes every pending request fails with the close reason, so no
/// request is ever left waiting or answered somewhere else.
final class ControlLink: Sendable {
    typealias MessageHandler = @Sendable (ControlLink, HostMeshMessage, UInt64) -> Void
    typealias CloseHandler = @Sendable (ControlLink, CloseReason) -> Void

    private struct Pending {
        var continuation: CheckedContinuation<Result<HostMeshMessage, LinkFailure>, Never>
        var timer: Task<Void, Never>?

        func resume(_ r: Result<HostMeshMessage, LinkFailure>) {
            timer?.cancel()
            continuation.resume(returning: r)
        }
    }

    private struct State {
        var nextCorrelation: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
        var closeReason: CloseReason?
        var closeWaiters: [@Sendable () -> Void] = []
    }

    let connection: any TransportConnection
    private let state = Mutex(State())
    private let logger: Logger

    var remoteAddress: Address { connection.remoteAddress }

    /// Wraps `connection` and starts it.
    init(connection: any TransportConnection, logger: Logger,
         onMessage: @escaping MessageHandler, onClose: @escaping CloseHandler = { _, _ in }) {
        self.connection = connection
        self.logger = logger
        // The connection keeps the handler until it closes; the handler keeps the link alive
        // as long as the connection can deliver to it.
        connection.start(ConnectionHandler(
            onEnvelope: { [self] envelope in self.receive(envelope, onMessage: onMessage) },
            onClose: { [self] reason in
                let (waiting, closeWaiters) = self.state.withLock { s in
                    s.closeReason = reason
                    defer {
                        s.pending.removeAll()
                        s.closeWaiters.removeAll()
                    }
                    return (Array(s.pending.values), s.closeWaiters)
                }
                for p in waiting { p.resume(.failure(.transport(.closed(reason)))) }
                for w in closeWaiters { w() }
                onClose(self, reason)
            }))
    }

    /// Runs `body` once the connection has closed (at once if it already has).
    func onCloseOnce(_ body: @escaping @Sendable () -> Void) {
        let closed = state.withLock { s -> Bool in
            if s.closeReason != nil { return true }
            s.closeWaiters.append(body)
            return false
        }
        if closed { body() }
    }

    /// The reason the connection closed, or nil while it is open.
    var closeReason: CloseReason? { state.withLock { $0.closeReason } }

    /// Sends `message` and waits for its reply.
    /// - Throws: `LinkFailure.transport` when the send fails or the connection closes first,
    ///   `.timedOut` when no reply arrives within `timeout`.
    func request(_ message: HostMeshMessage, timeout: Duration) async throws(LinkFailure) -> HostMeshMessage {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<HostMeshMessage, LinkFailure>, Never>) in
            let registered: Result<UInt64, LinkFailure> = state.withLock { s in
                if let r = s.closeReason { return .failure(.transport(.closed(r))) }
                let id = s.nextCorrelation
                s.nextCorrelation += 1
                s.pending[id] = Pending(continuation: c)
                return .success(id)
            }
            let id: UInt64
            switch registered {
            case .failure(let f): c.resume(returning: .failure(f)); return
            case .success(let i): id = i
            }
            do throws(TransportError) {
                try connection.send(message.envelope(correlation: id))
            } catch {
                state.withLock { $0.pending.removeValue(forKey: id) }?.resume(.failure(.transport(error)))
                return
            }
            let timer = Task { [weak self] in
                do { try await Task.sleep(for: timeout) } catch { return }
                self?.state.withLock { $0.pending.removeValue(forKey: id) }?.resume(.failure(.timedOut(timeout)))
            }
            let answered = state.withLock { s -> Bool in
                guard s.pending[id] != nil else { return true }
                s.pending[id]!.timer = timer
                return false
            }
            if answered { timer.cancel() }
        }
        return try result.get()
    }

    /// Sends a one-way message (a push) or a reply to `correlation`.
    func send(_ message: HostMeshMessage, replyTo correlation: UInt64 = 0) throws(TransportError) {
        try connection.send(message.envelope(correlation: correlation, response: correlation != 0))
    }

    /// Sends, logging instead of throwing (for pushes whose peer may be gone).
    func sendOrLog(_ message: HostMeshMessage, replyTo correlation: UInt64 = 0) {
        do {
            try send(message, replyTo: correlation)
        } catch {
            logger.debug("dropped host-mesh message to a closed peer",
                         metadata: ["peer": "\(remoteAddress)", "kind": "\(message.kind)", "error": "\(error)"])
        }
    }

    func close() { connection.close() }

    private func receive(_ envelope: Envelope, onMessage: MessageHandler) {
        let message: HostMeshMessage
        do {
            message = try HostMeshMessage(envelope: envelope)
        } catch {
            logger.warning("undecodable host-mesh message", metadata: ["peer": "\(remoteAddress)", "error": "\(error)"])
            if envelope.flags.contains(.response),
               let p = state.withLock({ $0.pending.removeValue(forKey: envelope.correlation) }) {
                p.resume(.success(.failure(error.description)))
            } else if envelope.correlation != 0 {
                sendOrLog(.failure(error.description), replyTo: envelope.correlation)
            }
            return
        }
        if envelope.flags.contains(.response) {
            if let p = state.withLock({ $0.pending.removeValue(forKey: envelope.correlation) }) {
                p.resume(.success(message))
            } else {
                logger.debug("late reply dropped", metadata: ["peer": "\(remoteAddress)", "correlation": "\(envelope.correlation)"])
            }
            return
        }
        onMessage(self, message, envelope.correlation)
    }
}
