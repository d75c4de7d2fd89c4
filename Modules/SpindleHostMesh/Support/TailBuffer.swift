/// The last lines of a proc's stderr, bounded in lines (lines come from a `LineAssembler`,
/// which bounds their length).
struct TailBuffer: Sendable {
    private(set) var lines: [String] = []
    let maxLines: Int

    init(maxLines: Int) { self.maxLines = max(0, maxLines) }

    mutating func append(_ line: String) {
        guard maxLines > 0 else { return }
        if lines.count == maxLines { lines.removeFirst() }
        lines.append(line)
    }

    var tail: [String] { lines }

    mutating func removeAll() { lines.removeAll() }
}
