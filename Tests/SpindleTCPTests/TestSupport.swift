#if canImport(Glibc)
import Glibc
#endif
import Logging
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing
@testable import SpindleTCP

/// A wait that ran out of time; the text says what was awaited.
struct TestTimeout: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Collects values from callbacks on any thread; tests await a count with a timeout.
final class Collector<T: Sendable>: Sendable {
    private struct State {
        var items: [T] = []
        var waiters: [Int: (count: Int, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var nextWaiter = 0
    }
    private let state = Mutex(State())

    init() {}

    func append(_ item: T) {
        let ready = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.items.append(item)
            let done = s.waiters.filter { $0.value.count <= s.items.count }
            for key in done.keys { s.waiters.removeValue(forKey: key) }
            return done.values.map(\.continuation)
        }
        for c in ready { c.resume(returning: true) }
    }

    var items: [T] { state.withLock { $0.items } }

    /// Waits until at least `count` items arrived; fails the test's wait after `timeout`.
    @discardableResult
    func wait(count: Int, timeout: Duration = .seconds(15), _ what: String = "events") async throws -> [T] {
        let reached = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.waitForCount(count) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard reached else { throw TestTimeout(what: "\(count) \(what) (have \(items.count))") }
        return items
    }

    /// Waits for the first item.
    @discardableResult
    func first(timeout: Duration = .seconds(15), _ what: String = "an event") async throws -> T {
        try await wait(count: 1, timeout: timeout, what)[0]
    }

    private func waitForCount(_ count: Int) async -> Bool {
        let id = state.withLock { s -> Int in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { s -> Bool? in
                    if s.items.count >= count { return true }
                    if Task.isCancelled { return false }
                    s.waiters[id] = (count, c)
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            let c = state.withLock { $0.waiters.removeValue(forKey: id) }
            c?.continuation.resume(returning: false)
        }
    }
}

/// A log handler that keeps every message, for asserting that something was logged.
struct CapturingLogHandler: LogHandler {
    let records: Collector<String>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { _, new in new }
        let text = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        records.append("\(event.level) \(event.message) \(text)")
    }
}

/// A configuration whose logs land in `records`.
func capturingConfiguration(_ records: Collector<String>, key: ClusterKey? = nil) -> TCPTransport.Configuration {
    var c = TCPTransport.Configuration()
    c.clusterKey = key
    c.logger = Logger(label: "spindle.tcp.test") { _ in CapturingLogHandler(records: records) }
    return c
}

/// Runs `body` with a fresh event loop, shutting it down afterwards and checking no handle
/// of the test remains.
func withLoop<R>(_ body: (EventLoop) async throws -> R) async throws -> R {
    let loop = try EventLoop(name: "tcp-test")
    do {
        let r = try await body(loop)
        #expect(await openHandlesAfterSettling(loop) == 0, "handles left open on the test loop")
        await loop.shutdown()
        return r
    } catch {
        await loop.shutdown()
        throw error
    }
}

/// The loop's open handle count once handles the test closed have finished closing (a few
/// loop turns; gives up after `timeout`).
func openHandlesAfterSettling(_ loop: EventLoop, timeout: Duration = .seconds(5)) async -> Int {
    let deadline = ContinuousClock.now + timeout
    while true {
        let n = await loop.openHandleCount
        if n == 0 || ContinuousClock.now >= deadline { return n }
        await loop.completedTurns(1)
    }
}

/// Runs `body` with a transport on a fresh loop; shuts both down afterwards.
func withTransport<R>(_ configuration: TCPTransport.Configuration = .init(),
                      _ body: (TCPTransport, EventLoop) async throws -> R) async throws -> R {
    try await withLoop { loop in
        let transport = TCPTransport(loop: loop, configuration: configuration)
        do {
            let r = try await body(transport, loop)
            await transport.shutdown()
            return r
        } catch {
            await transport.shutdown()
            throw error
        }
    }
}

/// An echo server: every accepted connection sends each envelope straight back.
func listenEcho(_ transport: TCPTransport, on address: Address = .tcp(host: "127.0.0.1", port: 0),
                closes: Collector<CloseReason>? = nil) async throws -> any TransportListener {
    try await transport.listen(on: address) { conn in
        conn.start(ConnectionHandler(
            onEnvelope: { try? conn.send($0) },
            onClose: { closes?.append($0) }))
    }
}

/// Runs `body` on a fresh transport (with `configuration`) with a client connected to an
/// echo server, and the envelopes and close reasons arriving back on that client.
func withEchoClient(_ configuration: TCPTransport.Configuration = .init(),
                    _ body: (any TransportConnection, Collector<Envelope>, Collector<CloseReason>) async throws -> Void) async throws {
    try await withTransport(configuration) { transport, _ in
        let listener = try await listenEcho(transport)
        let conn = try await transport.connect(to: listener.address)
        let (received, closes) = collect(conn)
        try await body(conn, received, closes)
    }
}

/// Starts `conn` and collects what arrives on it.
func collect(_ conn: any TransportConnection) -> (Collector<Envelope>, Collector<CloseReason>) {
    let envelopes = Collector<Envelope>(), closes = Collector<CloseReason>()
    conn.start(ConnectionHandler(onEnvelope: { envelopes.append($0) }, onClose: { closes.append($0) }))
    return (envelopes, closes)
}

func envelope(_ i: Int, payload: [UInt8] = Array(repeating: 7, count: 64)) -> Envelope {
    Envelope(protocolTag: .application, kind: 1, correlation: UInt64(i), sequence: UInt64(i), payload: payload)
}

/// A unique Unix socket path under /tmp.
func temporarySocketPath() -> String {
    "/tmp/spindle-tcp-test-\(UInt64.random(in: 1 ... .max)).sock"
}

/// A fresh random cluster key in a file of a private temporary directory, as `spindle keygen`
/// writes it; `remove()` deletes both.
struct TemporaryKeyFile {
    let directory: String
    let path: String
    let key: ClusterKey

    init(key: ClusterKey = .random()) throws {
        var template = Array("/tmp/spindle-key-test-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw TestTimeout(what: "a temporary directory (mkdtemp failed)")
        }
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        path = directory + "/cluster.key"
        self.key = key
        try key.write(toFile: path)
    }

    func remove() {
        unlink(path)
        rmdir(directory)
    }
}
