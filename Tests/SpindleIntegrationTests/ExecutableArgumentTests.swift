// Every executable parses its command line with swift-argument-parser: `--help` exits 0 with
// an overview, an unknown argument exits 64 with a usage line, `spindle-bench --list` lists
// the suites.
import Spindle
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Executables' command lines", .serialized)
struct ExecutableArgumentTests {
    static let executables = ["spindle", "spindle-demo", "spindle-bench", "spindle-shard"]

    /// The directory of the products (`.build/<triple>/<config>/`), where the test bundle is.
    static func productsDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        var dir = String(decoding: buffer[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        while let slash = dir.lastIndex(of: "/"), !dir.hasSuffix("/debug"), !dir.hasSuffix("/release") {
            dir = String(dir[..<slash])
        }
        return dir
    }

    /// Runs `executable` with `arguments`; its exit status and everything it wrote.
    func run(_ executable: String, _ arguments: [String]) async throws -> (SpindleEventLoop.ExitStatus, String) {
        let path = Self.productsDirectory() + "/" + executable
        try #require(access(path, X_OK) == 0, "\(path) is missing: build all products (swift build --build-tests)")
        let loop = try EventLoop(name: "exe-args")
        var options = ProcessOptions(executable: path, arguments: arguments)
        options.stdout = .pipe
        options.stderr = .pipe
        let child = try await ChildProcess.spawn(on: loop, options)
        let output = Output()
        let closed = Output.Closed()
        child.stdout?.start(onRead: { output.append($0) }, onClose: { _ in closed.mark() })
        child.stderr?.start(onRead: { output.append($0) }, onClose: { _ in closed.mark() })
        let status = await child.wait()
        // Both pipes end when the process does; wait for their last bytes.
        let clock = ContinuousClock()
        let until = clock.now + .seconds(10)
        while closed.count < 2 && clock.now < until { await Task.yield() }
        await loop.shutdown()
        return (status, output.text)
    }

    @Test(arguments: executables)
    func helpExitsZero(executable: String) async throws {
        let (status, text) = try await run(executable, ["--help"])
        #expect(status == .exited(code: 0))
        #expect(text.contains("USAGE:") || text.contains("Usage:"), "\(text)")
        #expect(text.contains("OVERVIEW:"), "\(text)")
    }

    @Test(arguments: executables)
    func unknownArgumentExits64WithAUsageLine(executable: String) async throws {
        let (status, text) = try await run(executable, ["--no-such-option"])
        #expect(status == .exited(code: 64))
        #expect(text.contains("Unknown option '--no-such-option'"), "\(text)")
        #expect(text.contains("Usage: \(executable)"), "\(text)")
    }

    @Test func benchListsItsSuites() async throws {
        let (status, text) = try await run("spindle-bench", ["--list"])
        #expect(status == .exited(code: 0))
        let names = text.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
        #expect(names == ["kernel", "eventloop", "transport", "tasklets", "queue", "engine", "mesh", "runner", "actors", "cluster"])
        let (badStatus, badText) = try await run("spindle-bench", ["nosuch"])
        #expect(badStatus == .exited(code: 64))
        #expect(badText.contains("unknown suite \"nosuch\""))
    }
}

/// What a child wrote on its pipes.
final class Output: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ raw: UnsafeRawBufferPointer) { bytes.withLock { $0.append(contentsOf: raw) } }
    var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }

    /// How many of a child's pipes have closed.
    final class Closed: Sendable {
        private let n = Atomic<Int>(0)
        func mark() { n.add(1, ordering: .relaxed) }
        var count: Int { n.load(ordering: .relaxed) }
    }
}
