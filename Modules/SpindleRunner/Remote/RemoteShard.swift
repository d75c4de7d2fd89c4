import SpindleKernel
import Synchronization

/// The coordinator's handle on a shard served by a `ShardHost` in another process (or over any
/// transport): sends phase requests, receives phase replies.
///
/// Obtained from `ShardServerListener.waitForShards(count:timeout:)`; pass it to a
/// `DistributedRunner` as `.remote(shard)`.
public final class RemoteShard: Sendable, CustomStringConvertible {
    public let id: ShardID
    public let connection: any TransportConnection

    private struct State {
        var onReply: (@Sendable (PhaseReply, HLCTimestamp) -> Void)?
        var onClose: (@Sendable (String) -> Void)?
        var closed: String?
        var nextCorrelation: UInt64 = 1
        var digests: [UInt64: CheckedContinuation<UInt64, any Error>] = [:]
    }
    private let state = Mutex(State())

    init(id: ShardID, connection: any TransportConnection) {
        self.id = id
        self.connection = connection
    }

    public var description: String { "remote \(id) at \(connection.remoteAddress)" }

    /// Installs the runner's handlers.
    func attach(onReply: @escaping @Sendable (PhaseReply, HLCTimestamp) -> Void,
                onClose: @escaping @Sendable (String) -> Void) {
        let closed: String? = state.withLock {
            $0.onReply = onReply
            $0.onClose = onClose
            return $0.closed
        }
        if let closed { onClose(closed) }
    }

    func send(_ request: PhaseRequest, stamp: HLCTimestamp) throws(RunnerError) {
        let envelope = Envelope(protocolTag: .runner, kind: RunnerMessageKind.phaseStart.rawValue,
                                correlation: request.round, stamp: stamp, payload: request.encode())
        do {
            try connection.send(envelope)
        } catch {
            throw .remoteFailure(shard: id, reason: "cannot send the \(request.phase) request of tick \(request.tick): \(error)")
        }
    }

    /// Asks the shard server for its state digest.
    func stateDigest(stamp: HLCTimestamp) async throws(RunnerError) -> UInt64 {
        do {
            return try await withCheckedThrowingContinuation { c in
                let correlation: UInt64? = state.withLock { s in
                    if s.closed != nil { return nil }
                    let n = s.nextCorrelation
                    s.nextCorrelation += 1
                    s.digests[n] = c
                    return n
                }
                guard let correlation else {
                    c.resume(throwing: RunnerError.remoteFailure(shard: id, reason: "connection closed"))
                    return
                }
                do {
                    try connection.send(Envelope(protocolTag: .runner, kind: RunnerMessageKind.digestRequest.rawValue,
                                                 correlation: correlation, stamp: stamp))
                } catch {
                    if let c = state.withLock({ $0.digests.removeValue(forKey: correlation) }) {
                        c.resume(throwing: RunnerError.remoteFailure(shard: id, reason: "cannot ask for the digest: \(error)"))
                    }
                }
            }
        } catch let e as RunnerError {
            throw e
        } catch {
            throw .remoteFailure(shard: id, reason: "\(error)")
        }
    }

    /// Tells the shard server to stop serving and closes the connection.
    public func stop() {
        try? connection.send(Envelope(protocolTag: .runner, kind: RunnerMessageKind.stop.rawValue, flags: .oneWay))
        connection.close()
    }

    /// An envelope from the shard server.
    func handle(_ envelope: Envelope) {
        guard envelope.protocolTag == .runner else { return }
        switch RunnerMessageKind(rawValue: envelope.kind) {
        case .phaseDone:
            do {
                let reply = try PhaseReply.decode(envelope.payload)
                guard reply.shard == id else {
                    protocolViolation("phase reply names \(reply.shard)")
                    return
                }
                state.withLock { $0.onReply }?(reply, envelope.stamp)
            } catch {
                protocolViolation("\(error)")
            }
        case .digestReply:
            var r = WireReader(envelope.payload)
            let value = try? r.u64("digest")
            let c = state.withLock { $0.digests.removeValue(forKey: envelope.correlation) }
            if let value {
                c?.resume(returning: value)
            } else {
                c?.resume(throwing: RunnerError.remoteFailure(shard: id, reason: "malformed digest reply"))
            }
        default:
            protocolViolation("unexpected message kind \(envelope.kind)")
        }
    }

    private func protocolViolation(_ what: String) {
        handleClose("protocol violation: \(what)")
        connection.close()
    }

    /// The connection closed: the waiting round (if any) fails with this shard named.
    func handleClose(_ reason: String) {
        let (handler, waiting): ((@Sendable (String) -> Void)?, [CheckedContinuation<UInt64, any Error>]) =
            state.withLock { s in
                guard s.closed == nil else { return (nil, []) }
                s.closed = reason
                let w = Array(s.digests.values)
                s.digests.removeAll()
                return (s.onClose, w)
            }
        for c in waiting { c.resume(throwing: RunnerError.remoteFailure(shard: id, reason: reason)) }
        handler?(reason)
    }
}
