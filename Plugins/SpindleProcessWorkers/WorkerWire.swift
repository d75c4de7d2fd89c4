import Foundation
import SpindleSupport
import SpindleTaskQueue

/// The bytes between a master and a worker process, over the worker's stdin and stdout.
///
/// Every message is one frame: a 4-byte little-endian length `n`, then `n` bytes: a type
/// byte and the body. Frames larger than `maxFrameSize` are refused before allocation.
///
/// ```
///  master → worker                         worker → master
///  'H' hello  {version, kind, maxFrameSize} 'A' accept {version, kind, pid}
///  'R' request  seq:u64le ‖ JSON request   'N' refuse  UTF-8 reason
///  'W' withdraw seq:u64le…                 'F' feedback seq:u64le ‖ JSON feedback
///  'B' broadcast JSON feedback             'S' response seq:u64le ‖ JSON response
///  'X' exit (finish, then exit 0)          'E' thrown error seq:u64le ‖ flags:u8 ‖ JSON ErrorEnvelope
///                                          'M' marshal failure seq:u64le ‖ dir:u8 ‖ UTF-8 detail
///                                          'm' feedback marshal failure seq:u64le ‖ UTF-8 detail
///                                          'b' broadcast decode failure UTF-8 detail
/// ```
///
/// Both sides use the master's `maxFrameSize`, sent in the hello: a frame longer than that is
/// refused before allocation, and a worker whose response or error would not fit sends a
/// marshal failure instead. `W` takes back requests the worker has not started (cancelled);
/// it skips them without an answer. `E` flags bit 0: the error asked for a retry.
///
/// Bodies are JSON (Foundation's coders): kinds need only `Codable`. The framing is our own
/// rather than the kernel's envelope frames because these messages need no addressing, no
/// clock stamps and no routing; a 5-byte header keeps the per-task cost minimal.
enum WorkerWire {
    static let version: UInt32 = 2
    static let headerSize = 4

    enum FrameType: UInt8 {
        case hello = 0x48      // H
        case request = 0x52    // R
        case broadcast = 0x42  // B
        case exit = 0x58       // X
        case withdraw = 0x57   // W
        case accept = 0x41     // A
        case refuse = 0x4E     // N
        case feedback = 0x46   // F
        case response = 0x53   // S
        case marshalFailure = 0x4D  // M
        case feedbackMarshalFailure = 0x6D  // m
        case error = 0x45      // E
        case broadcastFailure = 0x62  // b
    }

    /// Bytes a frame adds around a body that carries a task number (length, type, seq).
    static let seqFrameOverhead = 4 + 1 + 8

    struct Hello: Codable {
        var version: UInt32
        var kind: String
        var maxFrameSize: Int
    }

    /// An error `perform` threw, as it crosses to the master: its type name, its JSON when it
    /// is `Encodable`, and its description.
    struct ErrorEnvelope: Codable {
        var type: String
        var payload: String?
        var detail: String
    }

    struct Accept: Codable {
        var version: UInt32
        var kind: String
        var pid: Int32
    }

    static let directionCodes: [MarshalError.Direction] = [
        .encodeRequest, .decodeRequest, .encodeResponse, .decodeResponse, .encodeFeedback, .decodeFeedback,
        .encodeBroadcast, .decodeBroadcast, .encodeError, .decodeError,
    ]

    /// Appends a frame of `type` whose body is `seq` (when given) followed by `body`.
    static func append(_ type: FrameType, seq: UInt64? = nil, body: some Collection<UInt8>, to out: inout [UInt8]) {
        let length = 1 + (seq == nil ? 0 : 8) + body.count
        out.appendLittleEndian(UInt32(length))
        out.append(type.rawValue)
        if let seq { out.appendLittleEndian(seq) }
        out.append(contentsOf: body)
    }

    static func frame(_ type: FrameType, seq: UInt64? = nil, body: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(13 + body.count)
        append(type, seq: seq, body: body, to: &out)
        return out
    }
}

/// One decoded frame: its type byte and its body.
struct WireFrame {
    var type: UInt8
    var body: ArraySlice<UInt8>

    /// Splits a body into its leading `seq` and the rest.
    func splitSeq() -> (UInt64, ArraySlice<UInt8>)? {
        var reader = ByteReader(body)
        guard let seq = try? reader.u64() else { return nil }
        return (seq, reader.rest())
    }
}

/// A malformed byte stream from the other side: the stream offset and what was wrong.
typealias WireError = ByteReadError

/// Incremental frame decoder: feed any split of the bytes, get the same frames.
struct WireReader {
    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes consumed before `buffer[0]`, for error offsets.
    private var consumed = 0
    var maxFrameSize: Int

    init(maxFrameSize: Int) { self.maxFrameSize = maxFrameSize }

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count {
            consumed += start
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 65_536 && start * 2 > buffer.count {
            consumed += start
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The next complete frame, nil when more bytes are needed.
    mutating func next() throws(WireError) -> WireFrame? {
        guard buffer.count - start >= WorkerWire.headerSize else { return nil }
        var header = ByteReader(buffer[start..<(start + WorkerWire.headerSize)], base: consumed + start)
        let length = Int(try header.u32())
        if length < 1 {
            throw WireError(offset: consumed + start, problem: "empty frame (length 0)")
        }
        if length > maxFrameSize {
            throw WireError(offset: consumed + start,
                            problem: "frame of \(length) bytes exceeds the limit of \(maxFrameSize)")
        }
        guard buffer.count - start - WorkerWire.headerSize >= length else { return nil }
        let bodyStart = start + WorkerWire.headerSize
        let frame = WireFrame(type: buffer[bodyStart], body: buffer[(bodyStart + 1)..<(bodyStart + length)])
        start = bodyStart + length
        return frame
    }
}
