import Logging
import SpindleActors
import SpindleKernel
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Polls `condition` until it holds; fails after `timeout` (generous: the machine is shared).
func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () async -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !(await condition()) {
        guard clock.now < deadline else { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// `count` systems on one in-process transport, listening on `inproc://<prefix>-<i>`; always
/// shut down, transport included.
func withInProcessSystems<T>(
    _ count: Int, prefix: String = "node", configure: (inout SpindleActorSystem.Configuration) -> Void = { _ in },
    _ body: ([SpindleActorSystem], InProcessTransport) async throws -> T
) async throws -> T {
    let transport = InProcessTransport()
    var systems: [SpindleActorSystem] = []
    func cleanUp() async {
        for s in systems { await s.shutdown() }
        await transport.shutdown()
    }
    do {
        for i in 0..<count {
            var c = SpindleActorSystem.Configuration(listenAddress: .inproc(name: "\(prefix)-\(i)-\(UInt32.random(in: 0 ... .max))"))
            c.logger.logLevel = .critical
            // Liveness is not under test here (tests that test it set their own bound): the
            // whole suite on 2 shared cores can starve the cooperative pool for seconds, and
            // the 5 s default then declares a healthy in-process peer lost.
            c.link.core.livenessBound = .seconds(60)
            configure(&c)
            systems.append(try await SpindleActorSystem(transport: transport, configuration: c))
        }
        let r = try await body(systems, transport)
        await cleanUp()
        return r
    } catch {
        await cleanUp()
        throw error
    }
}

/// Runs `body`, expecting it to throw an `ActorCallError`; returns that error.
func expectCallError<T>(_ body: () async throws -> T, sourceLocation: SourceLocation = #_sourceLocation) async -> ActorCallError? {
    do {
        let v = try await body()
        Issue.record("expected an ActorCallError, got \(v)", sourceLocation: sourceLocation)
        return nil
    } catch let e as ActorCallError {
        return e
    } catch {
        Issue.record("expected an ActorCallError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A lock-protected value shared with escaping closures.
final class Locked<T: Sendable>: Sendable {
    private let m: Mutex<T>
    init(_ value: T) { m = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout sending T) -> sending R) -> R { m.withLock(body) }
    var value: T { m.withLock { $0 } }
}

/// A whole text file, or nil.
func readText(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmed: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }

    /// The parts between occurrences of `separator`.
    func parts(separatedBy separator: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let r = rest.firstRange(of: separator) {
            parts.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}

/// A process's state letter from /proc/<pid>/stat (`R`, `S`, `T` stopped, `Z`…), or nil.
func processState(_ pid: Int32) -> Character? {
    guard let line = readText("/proc/\(pid)/stat"), let close = line.lastIndex(of: ")") else { return nil }
    return line[line.index(after: close)...].first { $0 != " " }
}
