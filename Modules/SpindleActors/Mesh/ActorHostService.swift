import Distributed
import SpindleHostMesh
import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

/// On a proc: makes the mesh actors the client asks for and keeps them alive. Its
/// well-known name is `spindle.actor-host`.
public distributed actor ActorHostService {
    public typealias ActorSystem = SpindleActorSystem
    static let wellKnownName = "spindle.actor-host"

    private let types: [String: any MeshActor.Type]
    private let environment: ProcEnvironment
    private let config: ConfigSnapshot
    private var hosted: [String: any DistributedActor] = [:]

    init(types: [any MeshActor.Type], environment: ProcEnvironment, config: ConfigSnapshot, actorSystem: SpindleActorSystem) {
        var byName: [String: any MeshActor.Type] = [:]
        for t in types { byName[t.meshTypeName] = t }
        self.types = byName
        self.environment = environment
        self.config = config
        self.actorSystem = actorSystem
    }

    /// Makes an actor of the registered type `type` named `name` from its encoded spawn
    /// argument; returns its id.
    /// - Throws: `ActorHostError` (arrives typed at the client).
    distributed func spawn(type: String, name: String, argument: [UInt8]) async throws -> ActorID {
        guard let t = types[type] else { throw ActorHostError.unknownType(type, known: types.keys.sorted()) }
        guard hosted[name] == nil else { throw ActorHostError.nameInUse(name) }
        let actor = try await make(t, name: name, argument: argument)
        hosted[name] = actor
        return actor.id
    }

    private func make<A: MeshActor>(_ type: A.Type, name: String, argument: [UInt8]) async throws -> A {
        let system = actorSystem
        let decoded: A.SpawnArgument
        do {
            decoded = try CompactDecoder(userInfo: [.actorSystemKey: system]).decode(A.SpawnArgument.self, from: argument)
        } catch {
            throw ActorHostError.badArgument(type: A.meshTypeName, reason: "\(error)")
        }
        let context = MeshActorContext(rank: environment.rank, worldSize: environment.worldSize,
                                       procMesh: environment.mesh, actorMesh: name, config: config, actorSystem: system)
        do {
            return try await system.withWellKnownName(name) { try await A.spawn(argument: decoded, context: context) }
        } catch let e as ActorSystemError {
            if case .nameInUse = e { throw ActorHostError.nameInUse(name) }
            throw ActorHostError.factoryFailed(type: A.meshTypeName, reason: "\(e)")
        } catch {
            throw ActorHostError.factoryFailed(type: A.meshTypeName, reason: "\(error)")
        }
    }

    /// Lets the actor named `name` go (calls to it then fail with `.actorNotFound`).
    distributed func stop(name: String) {
        hosted.removeValue(forKey: name)
    }

    /// The proc's process id.
    distributed func processID() -> Int32 { getpid() }
}
