/// A request, response, feedback, broadcast or thrown error that could not be encoded or
/// decoded, or did not fit a frame.
public struct MarshalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Which way the value was travelling.
    public enum Direction: String, Sendable, Codable {
        case encodeRequest = "encoding the request"
        case decodeRequest = "decoding the request"
        case encodeResponse = "encoding the response"
        case decodeResponse = "decoding the response"
        case encodeFeedback = "encoding feedback"
        case decodeFeedback = "decoding feedback"
        case encodeBroadcast = "encoding a broadcast"
        case decodeBroadcast = "decoding a broadcast"
        case encodeError = "encoding a thrown error"
        case decodeError = "decoding a thrown error"
    }

    public var direction: Direction
    /// The kind's name.
    public var kind: String
    /// The worker involved, when there was one.
    public var worker: WorkerID?
    /// What the coder said.
    public var detail: String

    public init(direction: Direction, kind: String, worker: WorkerID?, detail: String) {
        self.direction = direction
        self.kind = kind
        self.worker = worker
        self.detail = detail
    }

    public var description: String {
        let w = worker.map { " on worker \($0)" } ?? ""
        return "\(kind): failed \(direction.rawValue)\(w): \(detail)"
    }
}
