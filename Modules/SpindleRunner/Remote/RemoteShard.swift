import SpindleKernel
import SpindleSupport
import Synchronization

/// The coordinator's handle on a shard served by a `ShardHost` in another process (or over any
/// transport): sends phase requests, receives phase replies, and makes calls (digest, snapshot,
/// restore, rollback) that each end within a timeout.
///
/// Obtained from `ShardServerListener.waitForShards(count:timeout:)` or `waitForShard(_:timeout:)`;
/// pass it to a `DistributedRunner` as `.remote(shard)`.
public final class RemoteShard: Sendable, CustomStringConvertible {
    public let id: ShardID
    public let connection: any TransportConnection
    /// Whether the served shard reads ghost nodes (from its hello).
    public let readsGhosts: Bool

    private struct PendingCall {
        var operation: String
        var continuation: CheckedContinuation<Result<[UInt8], RunnerError>, Never>
        var received: [UInt8] = []
        /// Fails the call when its time is up; cancelled when the reply comes first.
        var timer: Task<Void, Never>?
    }
    private struct State {
        var onReply: (@Sendable (PhaseReply, HLCTimestamp) -> Void)?
        var onClose: (@Sendable (String) -> Void)?
        var closed: String?
        var nextCorrelation: UInt64 = 1
        var calls: [UInt64: PendingCall] = [:]
    }
    private let state = Mutex(State())

    init(id: ShardID, connection: any TransportConnection, readsGhosts: Bool = true) {
        self.id = id
        self.connection = connection
        self.readsGhosts = readsGhosts
    }

    public var description: String { "remote \(id) at \(connection.remoteAddress)" }

    /// Why the connection closed, or nil while it is open.
    public var closedReason: String? { state.withLock { $0.closed } }

    /// Installs the runner's handlers (replacing earlier ones).
    func attach(onReply: @escaping @Sendable (PhaseReply, HLCTimestamp) -> Void,
                onClose: @escaping @Sendable (String) -> Void) {
        let closed: String? = state.withLock {
            $0.onReply = onReply
            $0.onClose = onClose
            return $0.closed
        }
        if let closed { onClose(closed) }
    }

    /// Removes the runner's handlers.
    func detach() {
        state.withLock {
            $0.onReply = nil
            $0.onClose = nil
        }
    }

    func send(_ request: PhaseRequest, stamp: HLCTimestamp) throws(RunnerError) {
        if let closed = closedReason {
            throw .remoteFailure(shard: id, reason: "connection closed: \(closed)")
        }
        let envelope = Envelope(protocolTag: .runner, kind: RunnerMessageKind.phaseStart.rawValue,
                                correlation: request.round, stamp: stamp, payload: request.encode())
        do {
            try connection.send(envelope)
        } catch {
            throw .remoteFailure(shard: id, reason: "cannot send the \(request.phase) request of tick \(request.tick): \(error)")
        }
    }

    // MARK: Calls

    /// Asks the shard server for its state digest.
    func stateDigest(stamp: HLCTimestamp, timeout: Duration) async throws(RunnerError) -> UInt64 {
        let bytes = try await call(.digestRequest, payloads: [[]], operation: "the state digest", stamp: stamp, timeout: timeout)
        var r = ByteReader(bytes)
        do {
            let value = try r.u64("digest")
            try r.expectEnd("digest reply")
            return value
        } catch {
            throw .remoteFailure(shard: id, reason: "malformed digest reply: \(error)")
        }
    }

    /// Asks the shard server for its shard's snapshot.
    func snapshot(stamp: HLCTimestamp, timeout: Duration) async throws(RunnerError) -> [UInt8] {
        try await call(.snapshotRequest, payloads: [[]], operation: "a snapshot", stamp: stamp, timeout: timeout)
    }

    /// Restores the server's shard from `snapshot` (sent in chunks).
    func restore(_ snapshot: [UInt8], stamp: HLCTimestamp, timeout: Duration) async throws(RunnerError) {
        let chunks = SnapshotChunk.split(snapshot, size: chunkSize).map { $0.encode() }
        _ = try await call(.restoreChunk, payloads: chunks, operation: "a restore", stamp: stamp, timeout: timeout)
    }

    /// Rolls the server's shard back to the state it kept at the start of `tick`.
    func rollback(toStartOf tick: UInt64, stamp: HLCTimestamp, timeout: Duration) async throws(RunnerError) {
        var w = ByteWriter()
        w.u64(tick)
        _ = try await call(.rollbackRequest, payloads: [w.bytes], operation: "a rollback to the start of tick \(tick)",
                           stamp: stamp, timeout: timeout)
    }

    /// Bytes per snapshot chunk: well under the connection's frame limit.
    private var chunkSize: Int { max(1024, min(4 << 20, connection.maximumFrameSize - 4096)) }

    /// Sends `payloads` (one envelope each, same correlation) and waits for the reply.
    private func call(_ kind: RunnerMessageKind, payloads: [[UInt8]], operation: String, stamp: HLCTimestamp,
                      timeout: Duration) async throws(RunnerError) -> [UInt8] {
        let id = self.id
        let result: Result<[UInt8], RunnerError> = await withCheckedContinuation { c in
            let correlation: UInt64? = state.withLock { s in
                if s.closed != nil { return nil }
                let n = s.nextCorrelation
                s.nextCorrelation += 1
                s.calls[n] = PendingCall(operation: operation, continuation: c)
                return n
            }
            guard let correlation else {
                c.resume(returning: .failure(.remoteFailure(shard: id, reason: "connection closed: \(closedReason ?? "")")))
                return
            }
            do {
                for p in payloads {
                    try connection.send(Envelope(protocolTag: .runner, kind: kind.rawValue,
                                                 correlation: correlation, stamp: stamp, payload: p))
                }
            } catch {
                complete(correlation, .failure(.remoteFailure(shard: id, reason: "cannot ask for \(operation): \(error)")))
                return
            }
            let timer = Task { [weak self] in
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                self?.complete(correlation, .failure(.remoteTimedOut(shard: id, operation: operation, limit: timeout)))
            }
            let answered = state.withLock { s in
                guard s.calls[correlation] != nil else { return true }
                s.calls[correlation]!.timer = timer
                return false
            }
            if answered { timer.cancel() }
        }
        return try result.get()
    }

    private func complete(_ correlation: UInt64, _ result: Result<[UInt8], RunnerError>) {
        let c = state.withLock { $0.calls.removeValue(forKey: correlation) }
        c?.timer?.cancel()
        c?.continuation.resume(returning: result)
    }

    /// Tells the shard server to stop serving and closes the connection.
    public func stop() {
        try? connection.send(Envelope(protocolTag: .runner, kind: RunnerMessageKind.stop.rawValue, flags: .oneWay))
        connection.close()
        handleClose("stopped by the coordinator")
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
            complete(envelope.correlation, .success(envelope.payload))
        case .snapshotChunk:
            let chunk: SnapshotChunk
            do { chunk = try SnapshotChunk.decode(envelope.payload) } catch {
                protocolViolation("\(error)")
                return
            }
            switch chunk {
            case .failed(let why):
                complete(envelope.correlation, .failure(.snapshotFailed(shard: id, operation: "snapshot", reason: why)))
            case .piece(let last, let bytes):
                let done: [UInt8]? = state.withLock { s in
                    guard s.calls[envelope.correlation] != nil else { return nil }
                    s.calls[envelope.correlation]!.received.append(contentsOf: bytes)
                    return last ? s.calls[envelope.correlation]!.received : nil
                }
                if let done { complete(envelope.correlation, .success(done)) }
            }
        case .restoreDone, .rollbackDone:
            let operation = envelope.kind == RunnerMessageKind.restoreDone.rawValue ? "restore" : "rollback"
            do {
                switch try CallStatus.decode(envelope.payload) {
                case .done: complete(envelope.correlation, .success([]))
                case .failed(let why):
                    complete(envelope.correlation, .failure(.snapshotFailed(shard: id, operation: operation, reason: why)))
                }
            } catch {
                protocolViolation("\(error)")
            }
        default:
            protocolViolation("unexpected message kind \(envelope.kind)")
        }
    }

    private func protocolViolation(_ what: String) {
        handleClose("protocol violation: \(what)")
        connection.close()
    }

    /// The connection closed: the waiting round (if any) and every call fail with this shard named.
    func handleClose(_ reason: String) {
        let (handler, waiting): ((@Sendable (String) -> Void)?, [PendingCall]) = state.withLock { s in
            guard s.closed == nil else { return (nil, []) }
            s.closed = reason
            let w = Array(s.calls.values)
            s.calls.removeAll()
            return (s.onClose, w)
        }
        for call in waiting {
            call.timer?.cancel()
            call.continuation.resume(returning: .failure(.remoteFailure(shard: id, reason: "connection lost during \(call.operation): \(reason)")))
        }
        handler?(reason)
    }
}
