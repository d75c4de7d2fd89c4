import Distributed

/// Reads one received call's generic substitutions and arguments, for
/// `executeDistributedTarget`. Every failure is a typed error (`InvocationDecodingFailure`),
/// reported to the caller as `ActorCallError.invalidCall`.
public struct SpindleInvocationDecoder: DistributedTargetInvocationDecoder {
    public typealias SerializationRequirement = Codable

    let header: CallHeader
    private var reader: BinaryReader
    private let state: CompactDecodingState
    private var decoded = 0

    /// - Parameters:
    ///   - reader: positioned at the first argument.
    init(header: CallHeader, reader: BinaryReader, system: SpindleActorSystem) {
        self.header = header
        self.reader = reader
        state = CompactDecodingState(bytes: reader.bytes, userInfo: [.actorSystemKey: system], maximumDepth: 256)
    }

    public mutating func decodeGenericSubstitutions() throws -> [Any.Type] {
        try header.substitutions.map { name in
            guard let t = TypeNames.type(named: name) else {
                throw InvocationDecodingFailure(reason: "unknown generic substitution \"\(name.prefix(64))\"")
            }
            return t
        }
    }

    public mutating func decodeNextArgument<Argument: Codable>() throws -> Argument {
        guard decoded < header.argumentCount else {
            throw InvocationDecodingFailure(reason: "the call carries \(header.argumentCount) arguments, the function takes more")
        }
        let slot: CompactSlot
        do {
            slot = try CompactSlot.read(&reader)
        } catch {
            throw InvocationDecodingFailure(reason: "argument \(decoded + 1): \(error)")
        }
        do {
            let value = try state.decodeValue(Argument.self, slot: slot, codingPath: [], depth: 0)
            decoded += 1
            return value
        } catch {
            throw InvocationDecodingFailure(reason: "argument \(decoded + 1) as \(Argument.self): \(error)")
        }
    }

    public mutating func decodeErrorType() throws -> Any.Type? { nil }

    public mutating func decodeReturnType() throws -> Any.Type? { nil }
}

/// A received call whose arguments could not be read: reported as `invalidCall`, never as an
/// error of the function.
struct InvocationDecodingFailure: Error, Sendable, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}
