/// A frame that cannot be encoded or decoded: what was wrong and at which byte.
///
/// Decoding errors carry the offset in the byte stream (counted from the first byte ever fed
/// to the decoder) of the field that was wrong. Encoding errors have no stream offset.
public struct FrameError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong.
    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        /// The frame does not start with the magic bytes "SP" (0x53 0x50).
        case badMagic(UInt8, UInt8)
        /// The frame's version byte names a version this codec cannot read.
        case unsupportedVersion(UInt8)
        /// The declared header is shorter than the version requires.
        case headerTooShort(declared: Int, minimum: Int)
        /// The frame (prefix + header + payload) is larger than the configured maximum.
        case oversized(size: Int, limit: Int)
        /// A header field holds a value the format forbids; the text names the field.
        case malformedHeader(String)
        /// The stream ended in the middle of a frame.
        case truncated(have: Int, need: Int)

        public var description: String {
            switch self {
            case .badMagic(let a, let b):
                return "bad magic 0x\(hexByte(a)) 0x\(hexByte(b)) (expected 0x53 0x50, \"SP\")"
            case .unsupportedVersion(let v):
                return "unsupported frame version \(v) (this codec reads version \(FrameLayout.version))"
            case .headerTooShort(let declared, let minimum):
                return "header length \(declared) is shorter than the minimum \(minimum)"
            case .oversized(let size, let limit):
                return "frame of \(size) bytes exceeds the limit of \(limit)"
            case .malformedHeader(let what):
                return "malformed header: \(what)"
            case .truncated(let have, let need):
                return "stream ended inside a frame: have \(have) of \(need) bytes"
            }
        }
    }

    public var kind: Kind
    /// Offset in the stream of the offending byte or field; nil for encoding errors.
    public var offset: Int?

    public init(_ kind: Kind, offset: Int?) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        if let offset { return "frame error at byte \(offset): \(kind)" }
        return "frame error: \(kind)"
    }

    /// The reason a transport gives when it closes a connection over this error.
    public var closeReason: CloseReason { .protocolViolation(description) }

    /// The error a transport's `send` throws for this encoding failure.
    public var transportError: TransportError {
        if case .oversized(let size, let limit) = kind {
            return .frameTooLarge(size: size, limit: limit)
        }
        return .closed(closeReason)
    }
}

extension FrameError {
    /// The error `send(encodedFrames:)` throws when the bytes handed to it fail to decode.
    public var encodedFramesError: TransportError {
        if case .oversized(let size, let limit) = kind { return .frameTooLarge(size: size, limit: limit) }
        return .invalidFrames(description)
    }
}

private func hexByte(_ b: UInt8) -> String {
    let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
    return String([digits[Int(b >> 4)], digits[Int(b & 0xF)]])
}
