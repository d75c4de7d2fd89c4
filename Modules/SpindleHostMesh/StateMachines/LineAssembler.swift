/// Cuts a byte stream (a proc's stdout or stderr) into lines, without I/O.
///
/// Lines end at `\n` (a `\r` before it is removed); a line longer than `maxLineBytes` is cut
/// there and marked with `…` (the rest of it, up to its newline, is dropped), so one huge
/// line never holds more than `maxLineBytes` of memory. Bytes that are not UTF-8 are
/// replaced (U+FFFD).
public struct LineAssembler: Sendable {
    public let maxLineBytes: Int
    private var partial: [UInt8] = []
    private var cut = false

    public init(maxLineBytes: Int = 16 << 10) {
        self.maxLineBytes = max(1, maxLineBytes)
    }

    /// Feeds bytes; appends every completed line to `lines`.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, into lines: inout [String]) {
        var start = 0
        let n = bytes.count
        while start < n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            append(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            if end < n {
                lines.append(takeLine())
                start = end + 1
            } else {
                start = end
            }
        }
    }

    /// Feeds bytes from an array (tests).
    public mutating func feed(_ bytes: [UInt8]) -> [String] {
        var lines: [String] = []
        bytes.withUnsafeBytes { feed($0, into: &lines) }
        return lines
    }

    /// The stream ended: the unterminated last line, if any.
    public mutating func finish() -> String? {
        guard !partial.isEmpty || cut else { return nil }
        return takeLine()
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard !cut else { return }
        let room = maxLineBytes - partial.count
        if bytes.count <= room {
            partial.append(contentsOf: bytes)
        } else {
            partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<room]))
            cut = true
        }
    }

    private mutating func takeLine() -> String {
        if partial.last == 0x0D { partial.removeLast() }
        var line = String(decoding: partial, as: UTF8.self)
        if cut { line += "…" }
        partial.removeAll(keepingCapacity: partial.count <= 4096)
        cut = false
        return line
    }
}
