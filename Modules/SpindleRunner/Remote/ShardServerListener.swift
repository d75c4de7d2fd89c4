import SpindleKernel
import SpindleSupport
import Synchronization

/// The coordinator's side of remote shards: listens on a transport address, and turns every
/// shard server that connects and says hello into a `RemoteShard`.
public final class ShardServerListener: Sendable {
    private let listener: any TransportListener
    private struct State {
        /// The shard ids the runner announced (nil: any).
        var expected: Set<ShardID>?
        var shards: [ShardID: RemoteShard] = [:]
        var rejected: [String] = []
        /// Calls of `waitForShards` and `waitForShard` waiting for what they await.
        var waiters: [(ticket: UInt64, awaited: Awaited, continuation: CheckedContinuation<Void, Never>)] = []
        var nextTicket: UInt64 = 0
        /// Tickets whose call timed out before its waiter was registered.
        var abandoned: Set<UInt64> = []
        var shutDown = false

        func holds(_ awaited: Awaited) -> Bool {
            switch awaited {
            case .count(let n): shards.count >= n
            case .shard(let id): shards[id].map { $0.closedReason == nil } ?? false
            }
        }
    }
    /// What a waiting call waits for: a number of shard servers, or a (new) server of one shard.
    private enum Awaited {
        case count(Int)
        case shard(ShardID)
    }
    private let state: Mutex<State>

    /// The bound address (port 0 resolved) to give shard servers.
    public var address: Address { listener.address }

    private init(listener: any TransportListener, expected: Set<ShardID>?) {
        self.listener = listener
        self.state = Mutex(State(expected: expected))
    }

    /// Listens on `address` of `transport`.
    ///
    /// A shard server's hello naming an id outside `expecting` (when given) is refused: its
    /// connection is closed and the refusal listed by `waitForShards`' error. Over SpindleTCP,
    /// an address beyond loopback needs a transport with a cluster key (the transport refuses
    /// plaintext there), like a host agent; bound to a wildcard, `address` reports what the
    /// transport advertises (`TCPTransport.Configuration.advertisedAddress`), never `0.0.0.0`.
    /// - Throws: `RunnerError.remoteFailure` when the transport cannot listen.
    public static func listen(on address: Address, transport: any Transport, hlc: HybridLogicalClock,
                              expecting: Set<ShardID>? = nil) async throws(RunnerError) -> ShardServerListener {
        let box = ListenerBox()
        let l: any TransportListener
        do {
            l = try await transport.listen(on: address) { connection in box.accept(connection, hlc: hlc) }
        } catch {
            throw .remoteFailure(shard: nil, reason: "cannot listen on \(address): \(error)")
        }
        let listener = ShardServerListener(listener: l, expected: expecting)
        box.owner.withLock { $0 = listener }
        return listener
    }

    /// Waits until `count` shard servers said hello.
    /// - Returns: their remote shards, in increasing id order.
    /// - Throws: `RunnerError.remoteFailure` naming how many arrived when `timeout` passes.
    public func waitForShards(count: Int, timeout: Duration) async throws(RunnerError) -> [RemoteShard] {
        let arrived = await wait(for: .count(count), timeout: timeout)
        let (shards, rejected) = state.withLock { ($0.shards, $0.rejected) }
        guard arrived, shards.count >= count else {
            throw .remoteFailure(shard: nil, reason: "\(shards.count) of \(count) shard servers said hello within \(timeout)"
                                 + (rejected.isEmpty ? "" : "; rejected: \(rejected.joined(separator: "; "))"))
        }
        return shards.values.sorted { $0.id < $1.id }
    }

    /// Waits until a shard server for `shard` is connected (at once if one is): after a server
    /// was lost, a new server for the same shard may say hello and takes its place. A launcher
    /// for `RecoveryPolicy.respawn` starts a server and returns this.
    /// - Throws: `RunnerError.remoteFailure` when none said hello within `timeout`.
    public func waitForShard(_ shard: ShardID, timeout: Duration) async throws(RunnerError) -> RemoteShard {
        func current() -> RemoteShard? {
            state.withLock { s in s.shards[shard].flatMap { $0.closedReason == nil ? $0 : nil } }
        }
        if let r = current() { return r }
        let arrived = await wait(for: .shard(shard), timeout: timeout)
        guard arrived, let r = current() else {
            let rejected = state.withLock { $0.rejected }
            throw .remoteFailure(shard: shard, reason: "no shard server for \(shard) said hello within \(timeout)"
                                 + (rejected.isEmpty ? "" : "; rejected: \(rejected.joined(separator: "; "))"))
        }
        return r
    }

    /// Waits until `awaited` holds (or the listener shuts down) or `timeout` passes.
    /// - Returns: false when the time ran out.
    private func wait(for awaited: Awaited, timeout: Duration) async -> Bool {
        let ticket = state.withLock { s in
            s.nextTicket += 1
            return s.nextTicket
        }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { c in
                    let ready: Bool = self.state.withLock { s in
                        if s.shutDown || s.holds(awaited) || s.abandoned.remove(ticket) != nil { return true }
                        s.waiters.append((ticket, awaited, c))
                        return false
                    }
                    if ready { c.resume() }
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            // Release this call's waiter if the timeout left it behind (or make it return at
            // once if it has not registered yet); other calls' waiters stay.
            let left: CheckedContinuation<Void, Never>? = self.state.withLock { s in
                if let i = s.waiters.firstIndex(where: { $0.ticket == ticket }) { return s.waiters.remove(at: i).continuation }
                if !first { s.abandoned.insert(ticket) }
                return nil
            }
            left?.resume()
            return first
        }
    }

    /// Stops every shard server that connected, closes their connections and the listener.
    public func shutdown() {
        listener.close()
        let (shards, waiters) = state.withLock { s in
            s.shutDown = true
            let w = s.waiters.map(\.continuation)
            s.waiters.removeAll()
            return (Array(s.shards.values), w)
        }
        for c in waiters { c.resume() }
        for r in shards { r.stop() }
    }

    fileprivate func register(_ shard: RemoteShard) -> Bool {
        let ready: [CheckedContinuation<Void, Never>]? = state.withLock { s in
            if let expected = s.expected, !expected.contains(shard.id) {
                s.rejected.append("\(shard.id) is not one of the shards announced (\(expected.sorted().map { "\($0)" }.joined(separator: ", ")))")
                return nil
            }
            guard !s.shutDown else { return nil }
            // A server for a shard whose earlier server is gone takes its place (respawn).
            if let old = s.shards[shard.id], old.closedReason == nil {
                s.rejected.append("\(shard.id) said hello twice")
                return nil
            }
            s.shards[shard.id] = shard
            let (ready, waiting) = (s.waiters.filter { s.holds($0.awaited) }, s.waiters.filter { !s.holds($0.awaited) })
            s.waiters = waiting
            return ready.map(\.continuation)
        }
        guard let ready else { return false }
        for c in ready { c.resume() }
        return true
    }
}

/// Routes a connection's envelopes: the first must be a hello, the rest go to its RemoteShard.
private final class ListenerBox: Sendable {
    let owner = Mutex<ShardServerListener?>(nil)

    func accept(_ connection: any TransportConnection, hlc: HybridLogicalClock) {
        let remote = Mutex<RemoteShard?>(nil)
        connection.start(ConnectionHandler(
            onEnvelope: { [self] envelope in
                hlc.receive(envelope.stamp)
                if let r = remote.withLock({ $0 }) {
                    r.handle(envelope)
                    return
                }
                var reader = ByteReader(envelope.payload)
                guard envelope.protocolTag == .runner,
                      envelope.kind == RunnerMessageKind.hello.rawValue,
                      let raw = try? reader.u64("shard id"),
                      let listener = owner.withLock({ $0 }) else {
                    connection.close()
                    return
                }
                // Optional after the id: 0 when the shard reads no ghosts.
                let readsGhosts = ((try? reader.u8("ghost flag")) ?? 1) != 0
                let shard = RemoteShard(id: ShardID(raw), connection: connection, readsGhosts: readsGhosts)
                guard listener.register(shard) else {
                    connection.close()
                    return
                }
                remote.withLock { $0 = shard }
            },
            onClose: { reason in remote.withLock { $0 }?.handleClose("\(reason)") }))
    }
}
