/// The last lines of a byte stream (a proc's stderr), bounded in lines and line length.
struct TailBuffer: Sendable {
    private(set) var lines: [String] = []
    private var partial: [UInt8] = []
    let maxLines: Int
    static let maxLineBytes = 512

    init(maxLines: Int) { self.maxLines = max(0, maxLines) }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                push()
            } else if partial.count < TailBuffer.maxLineBytes {
                partial.append(b)
            }
        }
    }

    /// The tail including an unterminated last line.
    var tail: [String] {
        var t = lines
        if !partial.isEmpty { t.append(String(decoding: partial, as: UTF8.self)) }
        return Array(t.suffix(maxLines))
    }

    private mutating func push() {
        lines.append(String(decoding: partial, as: UTF8.self))
        partial.removeAll(keepingCapacity: true)
        if lines.count > maxLines { lines.removeFirst(lines.count - maxLines) }
    }
}
