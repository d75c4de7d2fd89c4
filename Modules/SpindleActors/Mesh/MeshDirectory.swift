import Distributed
import SpindleKernel
import Synchronization

/// On a client's (listening) actor system: where the actor hosts of procs register, so that
/// `ProcMesh.spawnActors` can find them. Its well-known name is `spindle.actor-meshes`.
distributed actor MeshDirectory {
    typealias ActorSystem = SpindleActorSystem
    static let wellKnownName = "spindle.actor-meshes"

    private struct Key: Hashable {
        var procMesh: String
        var rank: Int
    }
    private struct Waiter: Sendable {
        var procMesh: String
        var pids: [Int32?]
        var continuation: CheckedContinuation<Void, Never>
    }
    private struct Registration {
        var host: ActorHostService
        var pid: Int32
    }
    private final class Waiters: Sendable {
        let list = Mutex<[UInt64: Waiter]>([:])
        /// Waits whose time ran out before they were registered.
        let expired = Mutex<Set<UInt64>>([])
    }
    private var hosts: [Key: Registration] = [:]
    /// Callers of `hosts(of:count:timeout:)` waiting for registrations. In a lock rather than
    /// isolated state: a waiter is added from inside `withCheckedContinuation`.
    private let waiters = Waiters()
    private var nextWaiter: UInt64 = 0

    init(actorSystem: SpindleActorSystem) {
        self.actorSystem = actorSystem
    }

    /// A proc's actor host announces itself, with its process id (a newer registration of a
    /// rank replaces an older).
    distributed func register(procMesh: String, rank: Int, pid: Int32, host: ActorHostService) {
        hosts[Key(procMesh: procMesh, rank: rank)] = Registration(host: host, pid: pid)
        let ready = waiters.list.withLock { w -> [CheckedContinuation<Void, Never>] in
            let done = w.filter { complete($0.value.procMesh, $0.value.pids) }
            for id in done.keys { w.removeValue(forKey: id) }
            return done.values.map(\.continuation)
        }
        for c in ready { c.resume() }
    }

    /// True when some rank of `procMesh` registered from the process the proc mesh says.
    func knows(_ procMesh: String, pids: [Int32?]) -> Bool {
        pids.indices.contains { host(procMesh, rank: $0, pid: pids[$0]) != nil }
    }

    /// The host of `rank`, if it registered from process `pid` (any, when nil).
    private func host(_ procMesh: String, rank: Int, pid: Int32?) -> ActorHostService? {
        guard let r = hosts[Key(procMesh: procMesh, rank: rank)], pid == nil || r.pid == pid else { return nil }
        return r.host
    }

    private func complete(_ procMesh: String, _ pids: [Int32?]) -> Bool {
        pids.indices.allSatisfy { host(procMesh, rank: $0, pid: pids[$0]) != nil }
    }

    /// The hosts of ranks 0..<pids.count, each registered from its proc's process id (when
    /// known), waiting up to `timeout` for those not registered yet; nil for ranks still
    /// missing then.
    func hosts(of procMesh: String, pids: [Int32?], timeout: Duration) async -> [ActorHostService?] {
        if !complete(procMesh, pids) {
            let id = nextWaiter
            nextWaiter += 1
            let waiters = self.waiters
            let timer = Task {
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                if let w = waiters.list.withLock({ $0.removeValue(forKey: id) }) {
                    w.continuation.resume()
                } else {
                    waiters.expired.withLock { _ = $0.insert(id) }
                }
            }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                // Still isolated here: no registration can come between the check and this.
                waiters.list.withLock { $0[id] = Waiter(procMesh: procMesh, pids: pids, continuation: c) }
                if waiters.expired.withLock({ $0.remove(id) }) != nil,
                   let w = waiters.list.withLock({ $0.removeValue(forKey: id) }) {
                    w.continuation.resume()
                }
            }
            timer.cancel()
        }
        return pids.indices.map { host(procMesh, rank: $0, pid: pids[$0]) }
    }
}
