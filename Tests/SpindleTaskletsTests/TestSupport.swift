import SpindleSupport
import SpindleTasklets
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every tasklet test, one at a time: thread counts and timing-sensitive waits must not see
/// other tests' threads.
@Suite(.serialized) struct TaskletTests {}

/// Runs `body` with a cancellation handle that a watchdog fires after `seconds`; reports
/// whether the watchdog fired (which a test then fails on: the launch did not end by itself).
func withWatchdog<T>(seconds: Int = 30, _ body: (TaskletCancellation) throws -> T) rethrows -> (T, timedOut: Bool) {
    let cancellation = TaskletCancellation()
    let finished = Atomic<Bool>(false)
    let fired = Atomic<Bool>(false)
    let watchdog = Task.detached {
        try? await Task.sleep(for: .seconds(seconds))
        if !finished.load(ordering: .acquiring) && !Task.isCancelled {
            fired.store(true, ordering: .releasing)
            cancellation.cancel()
        }
    }
    defer {
        finished.store(true, ordering: .releasing)
        watchdog.cancel()
    }
    let value = try body(cancellation)
    return (value, fired.load(ordering: .acquiring))
}

/// Runs `body(i)` on `count` fresh threads and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let threads = (0..<count).map { i in
        // A test machine that cannot start a thread cannot run the test.
        try! SpindleThread.start(name: "test-\(i)") { body(i) }
    }
    for thread in threads { thread.join() }
}

/// An error a lane throws on purpose.
struct Boom: Error, CustomStringConvertible, Equatable {
    var lane: Int
    var description: String { "boom in lane \(lane)" }
}

/// Counters shared by the lanes of a test.
final class Counters: Sendable {
    let arrivals = Atomic<Int>(0)
    let violations = Atomic<Int>(0)
    let started = Atomic<Int>(0)
    let cancelledSeen = Atomic<Int>(0)
    let exhaustedSeen = Atomic<Int>(0)
}

/// Calls `body` in a synchronous context, so an async test reaches the blocking `launch`
/// (in async code the async overload is preferred).
func blocking<T>(_ body: () throws -> T) rethrows -> T { try body() }

/// Scheduler states (the letter after the command in /proc/self/task/<tid>/stat) of this
/// process's threads named `name`.
func threadStates(named name: String) -> [Character] {
    func read(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var buffer = [CChar](repeating: 0, count: 1024)
        guard fgets(&buffer, 1024, f) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    guard let dir = opendir("/proc/self/task") else { return [] }
    defer { closedir(dir) }
    var states: [Character] = []
    while let entry = readdir(dir) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard tid != "." && tid != ".." else { continue }
        guard let comm = read("/proc/self/task/\(tid)/comm"), comm.trimmingNewline == name else { continue }
        // stat: "tid (comm) S …": the state follows the last ')'.
        guard let stat = read("/proc/self/task/\(tid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
        let rest = stat[stat.index(after: close)...].drop { $0 == " " }
        if let state = rest.first { states.append(state) }
    }
    return states
}

extension String {
    var trimmingNewline: Substring { self[...].prefix { $0 != "\n" } }
}

/// Number of this process's threads named `name` (a pool's `threadName`), so other tests'
/// threads do not disturb the count.
func threadCount(named name: String) -> Int { threadStates(named: name).count }
