import ActorFixtureActors
import Logging
import SpindleActors
import SpindleEventLoop
import SpindleKernel
import SpindleTCP
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An executable built beside this test binary (`.build/<config>/<name>`).
func builtExecutable(_ name: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw TestFailure("cannot read /proc/self/exe") }
    var dir = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    while let slash = dir.lastIndex(of: "/"), !dir.hasSuffix("/debug"), !dir.hasSuffix("/release") {
        dir = String(dir[..<slash])
        if dir.isEmpty { break }
    }
    let path = dir + "/" + name
    guard access(path, X_OK) == 0 else { throw TestFailure("\(path) is missing: run swift build --build-tests") }
    return path
}

/// Collects a child's output and hands out whole lines.
final class LineReader: Sendable {
    private let state = Mutex<(buffer: [UInt8], lines: [String], closed: Bool)>(([], [], false))

    func start(_ stream: StreamChannel) {
        stream.start(onRead: { chunk in
            self.state.withLock { s in
                s.buffer.append(contentsOf: chunk)
                while let nl = s.buffer.firstIndex(of: 0x0A) {
                    s.lines.append(String(decoding: s.buffer[..<nl], as: UTF8.self))
                    s.buffer.removeSubrange(...nl)
                }
            }
        }, onClose: { _ in self.state.withLock { $0.closed = true } })
    }

    /// The first line starting with `prefix`, waiting up to `timeout`.
    func line(startingWith prefix: String, timeout: Duration = .seconds(60)) async throws -> String {
        var found: String? = nil
        try await waitUntil("a line starting with \"\(prefix)\"", timeout: timeout) {
            found = state.withLock { $0.lines.first { $0.hasPrefix(prefix) } }
            return found != nil || state.withLock { $0.closed }
        }
        guard let found else { throw TestFailure("the process closed its output before printing \"\(prefix)\"") }
        return found
    }
}

/// A running ActorPeerFixture process and a client system that talks to it over TCP.
struct RemotePeer {
    let client: SpindleActorSystem
    let calculator: Calculator
    let observer: Observer
    let process: ChildProcess

    /// Starts the fixture, connects a client system (its configuration adjusted by
    /// `configure`), runs `body`, and always stops the process and shuts everything down.
    static func with<T>(configure: (inout SpindleActorSystem.Configuration) -> Void = { _ in },
                        _ body: (RemotePeer) async throws -> T) async throws -> T {
        let loop = try EventLoop(name: "actor-peer")
        var options = ProcessOptions(executable: try builtExecutable("ActorPeerFixture"), arguments: ["peer"])
        options.stdin = .pipe
        options.stdout = .pipe
        options.stderr = .inherit
        options.parentDeathSignal = SIGKILL
        let process: ChildProcess
        do {
            process = try await ChildProcess.spawn(on: loop, options)
        } catch {
            await loop.shutdown()
            throw error
        }
        let transport = try TCPTransport(loopCount: 1)
        var client: SpindleActorSystem? = nil
        func cleanUp() async {
            process.stdin?.close()
            let exited = await withTaskGroup(of: Bool.self) { g in
                g.addTask { _ = await process.wait(); return true }
                g.addTask { try? await Task.sleep(for: .seconds(15)); return false }
                let first = await g.next() ?? false
                g.cancelAll()
                return first
            }
            if !exited {
                try? process.kill(SIGKILL)
                _ = await process.wait()
            }
            await client?.shutdown()
            await transport.shutdown()
            await loop.shutdown()
        }
        do {
            let reader = LineReader()
            reader.start(try #require(process.stdout))
            let ready = try await reader.line(startingWith: "READY ")
            let calculatorID = try ActorID(parsing: String(ready.dropFirst("READY ".count)))
            var configuration = SpindleActorSystem.Configuration()
            configuration.logger.logLevel = .critical
            configuration.link.core.livenessBound = .seconds(60)   // tests of liveness set their own
            configure(&configuration)
            let system = try await SpindleActorSystem(transport: transport, configuration: configuration)
            client = system
            let address = try #require(calculatorID.address)
            let peer = RemotePeer(
                client: system,
                calculator: try Calculator.resolve(id: calculatorID, using: system),
                observer: try Observer.resolve(id: ActorID(node: calculatorID.node, local: .name("observer"), address: address),
                                               using: system),
                process: process)
            let r = try await body(peer)
            await cleanUp()
            return r
        } catch {
            await cleanUp()
            throw error
        }
    }

    /// Waits until the remote work log holds `entry`.
    func waitForWorkLog(_ entry: String, timeout: Duration = .seconds(30)) async throws {
        try await waitUntil("remote work log entry \"\(entry)\"", timeout: timeout) {
            (try? await observer.workLog().contains(entry)) ?? false
        }
    }
}
