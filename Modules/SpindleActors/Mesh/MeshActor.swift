import Distributed
import SpindleHostMesh

/// A distributed actor an actor mesh can start on its procs: it names a `Codable` spawn
/// argument and a factory that makes the actor on the proc.
///
/// ```swift
/// distributed actor Counter: MeshActor {
///     typealias ActorSystem = SpindleActorSystem
///     var value: Int
///     init(value: Int, actorSystem: SpindleActorSystem) { self.value = value; self.actorSystem = actorSystem }
///     static func spawn(argument: Int, context: MeshActorContext) async throws -> Counter {
///         Counter(value: argument, actorSystem: context.actorSystem)
///     }
///     distributed func add(_ n: Int) -> Int { value += n; return value }
/// }
/// ```
/// Register the type in the proc's executable (`ActorHost.runIfActorHost(registering:)`) and
/// spawn it from the client (`procs.spawnActors(Counter.self, name:arguments:)`).
public protocol MeshActor: DistributedActor where ActorSystem == SpindleActorSystem {
    /// What the client sends each rank to make its actor.
    associatedtype SpawnArgument: Codable & Sendable

    /// Makes the actor on its proc (with `context.actorSystem`).
    static func spawn(argument: SpawnArgument, context: MeshActorContext) async throws -> Self

    /// The name both sides use for the type; the default is its full Swift name.
    static var meshTypeName: String { get }
}

extension MeshActor {
    public static var meshTypeName: String { String(reflecting: Self.self) }
}

/// Where a mesh actor is made: its proc's rank and mesh, and the proc's actor system.
public struct MeshActorContext: Sendable {
    /// The proc's rank in its proc mesh.
    public var rank: Int
    /// The number of procs in the mesh.
    public var worldSize: Int
    /// The proc mesh's name.
    public var procMesh: String
    /// The actor mesh's name (the actor's well-known name on the proc).
    public var actorMesh: String
    /// The config snapshot the proc's agent had installed when the proc started.
    public var config: ConfigSnapshot
    public var actorSystem: SpindleActorSystem
}
