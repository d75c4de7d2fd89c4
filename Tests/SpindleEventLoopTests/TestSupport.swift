import Foundation
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing

/// A test failure: waiting for something that did not happen in time.
struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing with `TimedOut` after `seconds` (a deadline, not synchronisation).
func withTimeout<T: Sendable>(_ seconds: Double = 20, _ what: String,
                              _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TimedOut(what: what) }
        return value
    }
}

/// A one-shot value that one side fulfils and another awaits.
final class Promise<T: Sendable>: Sendable {
    private let state = Mutex<(value: T?, waiters: [CheckedContinuation<T, Never>])>((nil, []))

    func fulfil(_ value: T) {
        let waiters = state.withLock { s -> [CheckedContinuation<T, Never>] in
            guard s.value == nil else { return [] }
            s.value = value
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: value) }
    }

    var value: T? { state.withLock { $0.value } }

    func wait(_ seconds: Double = 20, _ what: String) async throws -> T {
        try await withTimeout(seconds, what) {
            await withCheckedContinuation { c in
                let now = self.state.withLock { s -> T? in
                    if let v = s.value { return v }
                    s.waiters.append(c)
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        }
    }
}

/// Collects bytes from a stream's onRead and lets a test wait until enough arrived.
final class ByteSink: Sendable {
    private let state = Mutex<(bytes: [UInt8], chunks: Int, closed: EventLoopError??)>(([], 0, nil))
    private let target = Mutex<(count: Int, promise: Promise<Void>)?>(nil)
    let closed = Promise<EventLoopError?>()

    func append(_ chunk: UnsafeRawBufferPointer) {
        let count = state.withLock { s -> Int in
            s.bytes.append(contentsOf: chunk)
            s.chunks += 1
            return s.bytes.count
        }
        target.withLock { t in
            if let t, count >= t.count { t.promise.fulfil(()) }
        }
    }

    func close(_ error: EventLoopError?) { closed.fulfil(error) }

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var chunkCount: Int { state.withLock { $0.chunks } }

    /// Waits until at least `count` bytes have arrived.
    func wait(for count: Int, _ seconds: Double = 20) async throws {
        let promise = Promise<Void>()
        target.withLock { $0 = (count, promise) }
        if state.withLock({ $0.bytes.count }) >= count { promise.fulfil(()) }
        try await promise.wait(seconds, "\(count) bytes (have \(state.withLock { $0.bytes.count }))")
    }

    func start(_ channel: StreamChannel) {
        channel.start(onRead: { self.append($0) }, onClose: { self.close($0) })
    }
}

/// Runs `body` with a fresh loop and always shuts it down, checking no handle is left.
func withLoop<T: Sendable>(_ name: String = "test-loop",
                           _ body: (EventLoop) async throws -> T) async throws -> T {
    let loop = try EventLoop(name: name)
    do {
        let value = try await body(loop)
        await loop.shutdown()
        #expect(loop.closeStatus == 0)
        #expect(await loop.openHandleCount == 0)
        return value
    } catch {
        await loop.shutdown()
        throw error
    }
}

/// Deterministic test bytes.
func pattern(_ count: Int, seed: UInt8 = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}

/// A temporary directory removed by `body`'s end.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("spindle-el-\(UInt32.random(in: 0...UInt32.max))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

extension EventLoop {
    /// Returns after at least one full loop iteration, so close callbacks of handles closed
    /// before the call have run.
    func settle() async {
        _ = try? await submit { 0 }
        _ = try? await submit { 0 }
    }
}
