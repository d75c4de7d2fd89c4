import Logging
import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// Prints the demo's progress and collects the summary table.
final class DemoLog: @unchecked Sendable {
    // @unchecked: only the demo's main task touches `rows`, step after step; the class exists so
    // steps can share it without threading an inout through every async call.
    struct Row {
        var step: String
        var outcome: String
        var seconds: Double
    }
    private(set) var rows: [Row] = []
    private var failures = 0
    let clock = SystemClock()

    func banner(_ text: String) {
        print("\n▶ \(text)")
    }

    func say(_ text: String) {
        print("  · \(text)")
    }

    /// Runs one step, timing it and recording its outcome; a failing step is reported and the
    /// demo goes on with the next.
    func step(_ name: String, _ body: () async throws -> String) async {
        banner(name)
        let t0 = clock.now()
        do {
            let outcome = try await body()
            let dt = Double((clock.now() - t0).nanosecondsClamped) / 1e9
            rows.append(Row(step: name, outcome: "✓ " + outcome, seconds: dt))
            say("done: \(outcome)")
        } catch {
            let dt = Double((clock.now() - t0).nanosecondsClamped) / 1e9
            failures += 1
            rows.append(Row(step: name, outcome: "✗ \(error)", seconds: dt))
            say("FAILED: \(error)")
        }
    }

    var failed: Bool { failures > 0 }

    func printSummary() {
        print("\n┌─ Summary " + String(repeating: "─", count: 86))
        for r in rows {
            let secs = String(Int((r.seconds * 1000).rounded())) + " ms"
            print("│ " + padded(r.step, 34) + padded(secs, 10) + r.outcome)
        }
        print("└" + String(repeating: "─", count: 96))
    }

    private func padded(_ s: String, _ w: Int) -> String {
        s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count)
    }
}

/// The directory holding this executable (where `swift build` also put `spindle-shard`).
func executableDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return "." }
    let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}

/// The path of this executable.
func ownExecutable() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return String(decoding: buffer[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func quietLogger(_ label: String) -> Logger {
    var l = Logger(label: label)
    l.logLevel = .warning
    return l
}
