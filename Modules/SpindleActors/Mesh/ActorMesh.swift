import Distributed
import Logging
import SpindleHostMesh
import SpindleKernel

/// One actor of type `A` on each proc of a proc mesh (Monarch's actor mesh), addressed by rank.
///
/// ```swift
/// let counters = try await procs.spawnActors(Counter.self, name: "counters") { rank in rank * 10 }
/// let totals = await counters.call { try await $0.add(1) }     // [Result<Int, any Error>], rank order
/// await counters.cast { _ = try await $0.add(1) }             // one-way, nothing awaited
/// let firstTwo = try counters.slice([0, 1])
/// for await event in counters.events() { print(event) }      // .procDied(rank: 2, state: killed(signal 9))
/// ```
/// Supervision: when a proc of the mesh dies — its agent reports it, or its link is lost —
/// its actor's pending and later calls fail at once with `ActorCallError.procDied(rank:state:)`
/// and `events()` reports it; the other ranks keep working.
public final class ActorMesh<A: MeshActor>: Sendable {
    /// The actor mesh's name (each actor's well-known name on its proc).
    public let name: String
    /// The ranks of this mesh (all of the proc mesh's, or a slice's), ascending.
    public let ranks: [Int]
    private let actors: [Int: A]
    let supervisor: MeshSupervisor
    let hosts: [Int: ActorHostService]
    private let logger: Logger

    init(name: String, ranks: [Int], actors: [Int: A], hosts: [Int: ActorHostService], supervisor: MeshSupervisor,
         logger: Logger) {
        self.name = name
        self.ranks = ranks
        self.actors = actors
        self.hosts = hosts
        self.supervisor = supervisor
        self.logger = logger
    }

    /// The number of actors.
    public var count: Int { ranks.count }

    /// The (remote) actor of `rank`; `rank` must be one of `ranks`.
    public subscript(rank: Int) -> A {
        guard let a = actors[rank] else { preconditionFailure("rank \(rank) is not in actor mesh \(name) (ranks \(ranks))") }
        return a
    }

    /// Runs `body` on every rank's actor concurrently; returns each rank's outcome in rank
    /// order. A dead rank's outcome is `.failure(ActorCallError.procDied(rank:state:))`.
    public func call<R: Sendable>(_ body: @escaping @Sendable (A) async throws -> R) async -> [Result<R, any Error>] {
        await withTaskGroup(of: (Int, Result<R, any Error>).self) { group in
            for (i, rank) in ranks.enumerated() {
                let actor = self[rank]
                if let dead = supervisor.deadState(rank) {
                    group.addTask { (i, .failure(ActorCallError.procDied(rank: rank, state: dead))) }
                    continue
                }
                group.addTask {
                    do { return (i, .success(try await body(actor))) } catch { return (i, .failure(error)) }
                }
            }
            var results = [Result<R, any Error>?](repeating: nil, count: ranks.count)
            for await (i, r) in group { results[i] = r }
            return results.map { $0! }
        }
    }

    /// Sends `body`'s calls to every live rank's actor one-way and returns once they are sent:
    /// nothing waits for results (a function returning a value gives `.sentOneWay`), and calls
    /// from this node to each actor stay in order with later ones. Failures to send are logged.
    public func cast(_ body: @escaping @Sendable (A) async throws -> Void) async {
        await OneWayCalls.$active.withValue(true) {
            await withTaskGroup(of: Void.self) { group in
                for rank in ranks where supervisor.deadState(rank) == nil {
                    let actor = self[rank]
                    let logger = self.logger
                    let name = self.name
                    group.addTask {
                        do {
                            try await body(actor)
                        } catch ActorCallError.sentOneWay {
                        } catch {
                            logger.notice("cast failed", metadata: ["mesh": "\(name)", "rank": "\(rank)", "error": "\(error)"])
                        }
                    }
                }
            }
        }
    }

    /// The sub-mesh of the given ranks (sharing this mesh's supervision).
    /// - Throws: `ActorMeshError.ranksOutOfRange` for ranks not in this mesh.
    public func slice(_ ranks: some Sequence<Int>) throws(ActorMeshError) -> ActorMesh<A> {
        let wanted = Array(Set(ranks)).sorted()
        let missing = wanted.filter { actors[$0] == nil }
        guard missing.isEmpty else { throw .ranksOutOfRange(missing, count: count) }
        return ActorMesh(name: name, ranks: wanted, actors: actors.filter { wanted.contains($0.key) },
                         hosts: hosts.filter { wanted.contains($0.key) }, supervisor: supervisor, logger: logger)
    }

    /// What happens to the mesh's procs, from now on (deaths that happened already first).
    /// Ends when the mesh is stopped.
    public func events() -> AsyncStream<ActorMeshEvent> {
        let ranks = Set(self.ranks)
        let all = supervisor.events()
        return AsyncStream { continuation in
            let task = Task {
                for await e in all {
                    switch e {
                    case .procState(let r, _), .procDied(let r, _): if ranks.contains(r) { continuation.yield(e) }
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Lets every live rank's actor go (later calls to them fail with `.actorNotFound`) and
    /// stops supervision. The procs keep running; stop them with `ProcMesh.stop()`.
    public func stop() async {
        await withTaskGroup(of: Void.self) { group in
            for rank in ranks where supervisor.deadState(rank) == nil {
                guard let host = hosts[rank] else { continue }
                let name = self.name
                group.addTask { try? await withDeadline(.seconds(10)) { try await host.stop(name: name) } }
            }
        }
        supervisor.stop()
    }
}

extension ProcMesh {
    /// Starts one actor of type `A` named `name` on every proc of this mesh and returns the
    /// actor mesh.
    ///
    /// The procs must run `ActorHost.runIfActorHost(registering:)` with `A` among the types,
    /// and the host mesh must have been attached with `clientAddress` set to the address of an
    /// actor system of this process (`system`, or found among this process's listening
    /// systems when nil): the procs registered their actor hosts there.
    /// - Parameters:
    ///   - arguments: each rank's spawn argument.
    ///   - timeout: how long to wait for procs' actor hosts that have not registered yet.
    /// - Throws: `ActorMeshError`; when some ranks fail, the actors made on the others are let go.
    public func spawnActors<A: MeshActor>(_ type: A.Type, name: String, on system: SpindleActorSystem? = nil,
                                          timeout: Duration = .seconds(30),
                                          arguments: (Int) throws -> A.SpawnArgument) async throws(ActorMeshError) -> ActorMesh<A> {
        if let problem = ActorID.nameProblem(name.utf8) { throw .invalidName(name, problem: problem.text) }
        var encoded: [[UInt8]] = []
        for rank in 0..<count {
            do {
                encoded.append(try CompactEncoder().encode(try arguments(rank)))
            } catch {
                throw .badArgument(rank: rank, reason: "\(error)")
            }
        }
        // The procs' process ids tell their registrations from those of another proc mesh of
        // the same name (another host mesh, an earlier incarnation).
        let pids = lastKnown.map(\.pid)
        guard let (system, directory) = await Self.findDirectory(for: self.name, pids: pids, preferring: system) else {
            throw .noActorHosts(procMesh: self.name)
        }
        let procMesh = self.name
        let found = await directory.whenLocal { await $0.hosts(of: procMesh, pids: pids, timeout: timeout) }
            ?? Array(repeating: nil, count: pids.count)
        let missing = found.indices.filter { found[$0] == nil }
        guard missing.isEmpty else { throw .hostsMissing(procMesh: self.name, ranks: missing, after: timeout) }
        let hosts = found.map { $0! }
        let typeName = A.meshTypeName
        let outcomes: [Int: Result<A, any Error>] = await withTaskGroup(of: (Int, Result<A, any Error>).self) { group in
            for rank in 0..<count {
                let host = hosts[rank], argument = encoded[rank]
                group.addTask {
                    do {
                        let id = try await withDeadline(timeout) {
                            try await host.spawn(type: typeName, name: name, argument: argument)
                        }
                        return (rank, .success(try A.resolve(id: id, using: system)))
                    } catch {
                        return (rank, .failure(error))
                    }
                }
            }
            var all: [Int: Result<A, any Error>] = [:]
            for await (rank, r) in group { all[rank] = r }
            return all
        }
        let failures = outcomes.compactMap { rank, r -> RankFailure? in
            if case .failure(let e) = r { return RankFailure(rank: rank, reason: "\(e)") }
            return nil
        }.sorted { $0.rank < $1.rank }
        guard failures.isEmpty else {
            await withTaskGroup(of: Void.self) { group in
                for (rank, r) in outcomes {
                    guard case .success = r else { continue }
                    let host = hosts[rank]
                    group.addTask { try? await withDeadline(.seconds(10)) { try await host.stop(name: name) } }
                }
            }
            throw .spawnFailed(actorMesh: name, failures: failures)
        }
        var actors: [Int: A] = [:]
        var nodes: [Int: NodeID] = [:]
        for (rank, r) in outcomes {
            if case .success(let a) = r {
                actors[rank] = a
                nodes[rank] = a.id.node
            }
        }
        let supervisor = MeshSupervisor(system: system, nodes: nodes, source: ProcMeshEvents(procs: self))
        supervisor.start()
        var logger = system.logger
        logger[metadataKey: "actor_mesh"] = "\(name)"
        return ActorMesh(name: name, ranks: Array(0..<count), actors: actors,
                         hosts: Dictionary(uniqueKeysWithValues: hosts.enumerated().map { ($0.offset, $0.element) }),
                         supervisor: supervisor, logger: logger)
    }

    /// The system (and its directory) the procs of `procMesh` registered with.
    private static func findDirectory(for procMesh: String, pids: [Int32?], preferring preferred: SpindleActorSystem?) async
        -> (SpindleActorSystem, MeshDirectory)? {
        if let preferred {
            return preferred.meshDirectory.map { (preferred, $0) }
        }
        let candidates = ActorSystemRegistry.shared.systems.compactMap { s in s.meshDirectory.map { (s, $0) } }
        for (s, d) in candidates where await d.whenLocal({ $0.knows(procMesh, pids: pids) }) == true { return (s, d) }
        // None registered yet: a single listening system is the one they will register with.
        return candidates.count == 1 ? candidates[0] : nil
    }
}

extension SpindleActorSystem {
    var meshDirectory: MeshDirectory? { state.withLock { $0.meshDirectory } }
}
