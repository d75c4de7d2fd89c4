import Distributed

/// Records one distributed call: its generic substitutions and its arguments, each encoded
/// with `CompactEncoder` as it is recorded.
public struct SpindleInvocationEncoder: DistributedTargetInvocationEncoder {
    public typealias SerializationRequirement = Codable

    var substitutions: [String] = []
    var arguments = BinaryWriter(capacity: 32)
    var argumentCount = 0

    init() {}

    public mutating func recordGenericSubstitution<T>(_ type: T.Type) throws {
        guard let name = TypeNames.name(of: type) else {
            throw ActorCallError.serializationFailed("generic substitution \(T.self) has no mangled name")
        }
        substitutions.append(name)
    }

    public mutating func recordArgument<Value: Codable>(_ argument: RemoteCallArgument<Value>) throws {
        do {
            try CompactEncoder().encode(argument.value, into: &arguments)
        } catch {
            throw ActorCallError.serializationFailed("argument \(argument.effectiveLabel) of type \(Value.self): \(error)")
        }
        argumentCount += 1
    }

    public mutating func recordReturnType<R: Codable>(_ type: R.Type) throws {}

    public mutating func recordErrorType<E: Error>(_ type: E.Type) throws {}

    public mutating func doneRecording() throws {}

    /// The call payload: header, then the arguments.
    func payload(actor: ActorID.Local, target: String) -> [UInt8] {
        var w = BinaryWriter(capacity: 24 + target.utf8.count + arguments.bytes.count)
        CallHeader(actor: actor, target: target, substitutions: substitutions, argumentCount: argumentCount)
            .write(into: &w)
        w.bytes.append(contentsOf: arguments.bytes)
        return w.bytes
    }
}
