import Distributed
import Synchronization

/// Receives how a distributed function ended on this node and encodes it as a `Reply`.
public final class SpindleResultHandler: DistributedTargetInvocationResultHandler, Sendable {
    public typealias SerializationRequirement = Codable

    private let outcome = Mutex<Reply?>(nil)
    /// The actor and function the call was for (named by refusals).
    let actor: ActorID
    let target: String

    init(actor: ActorID, target: String) {
        self.actor = actor
        self.target = target
    }

    /// The reply to send (nil until the function ended).
    var reply: Reply? { outcome.withLock { $0 } }

    func set(_ r: Reply) { outcome.withLock { $0 = r } }

    public func onReturn<Success: Codable>(value: Success) async throws {
        do {
            set(.value(try CompactEncoder().encode(value)))
        } catch {
            set(.systemError(.serializationFailed("result of type \(Success.self) on the remote side: \(error)")))
        }
    }

    public func onReturnVoid() async throws {
        set(.void)
    }

    public func onThrow<Err: Error>(error: Err) async throws {
        set(reply(for: error))
    }

    /// How a thrown error travels: system errors as themselves, `Codable` errors encoded with
    /// their type's name, anything else as its text.
    func reply(for error: any Error) -> Reply {
        if let failure = error as? InvocationDecodingFailure {
            return .systemError(.invalidCall(actor: actor, target: target, reason: failure.reason))
        }
        if let system = error as? ActorCallError { return .systemError(system) }
        let typeName = String(reflecting: type(of: error))
        if let codable = error as? any Codable, let mangled = TypeNames.name(of: type(of: error)),
           let encoded = try? Self.encodeOpened(codable) {
            return .codableError(type: mangled, encoded: encoded, description: String(describing: error))
        }
        return .otherError(type: typeName, description: String(describing: error))
    }

    private static func encodeOpened<E: Encodable>(_ value: E) throws -> [UInt8] {
        try CompactEncoder().encode(value)
    }
}
