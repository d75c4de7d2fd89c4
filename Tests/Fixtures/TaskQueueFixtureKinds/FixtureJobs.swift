import SpindleTaskQueue
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The README's job: squares a number (synchronous `run`).
public struct Square: ProcessJob {
    public static func run(_ x: Int) -> Int { x * x }
}

/// An `async` job: answers after a suspension, with the worker's pid.
public struct AsyncIncrement: ProcessJob {
    public struct Answer: Codable, Sendable, Equatable {
        public var value: Int
        public var pid: Int32
    }

    public static func run(_ x: Int) async throws -> Answer {
        try await Task.sleep(for: .microseconds(100))
        return Answer(value: x + 1, pid: getpid())
    }
}

/// What `Flaky` throws until its input was tried `failures + 1` times in this process.
public struct FlakyError: RetryableError, Codable, Equatable {
    public var attempt: Int
    public init(attempt: Int) { self.attempt = attempt }
}

/// Fails with a retryable error on its first attempts, then answers how many it took.
public struct Flaky: ProcessJob {
    public struct Input: Codable, Sendable {
        public var key: Int
        public var failures: Int
        public init(key: Int, failures: Int) {
            self.key = key
            self.failures = failures
        }
    }

    private static let attempts = Mutex<[Int: Int]>([:])

    public static var errorTypes: [any (Error & Codable).Type] { [FlakyError.self] }

    public static func run(_ input: Input) throws -> Int {
        let attempt = attempts.withLock { a -> Int in
            a[input.key, default: 0] += 1
            return a[input.key]!
        }
        if attempt <= input.failures { throw FlakyError(attempt: attempt) }
        return attempt
    }
}

/// Answers a string of the given length (to exceed a frame limit), or crashes the worker
/// for a negative length.
public struct Payload: ProcessJob {
    public static func run(_ length: Int) -> String {
        if length < 0 { _exit(3) }
        return String(repeating: "x", count: length)
    }
}

/// Spins (ignoring any cancel flag) for the given milliseconds, then answers its pid.
public struct Spin: ProcessJob {
    public static func run(_ milliseconds: Int) -> Int32 {
        let clock = ContinuousClock()
        let until = clock.now + .milliseconds(milliseconds)
        while clock.now < until {}
        return getpid()
    }
}

/// Every job the fixture executable serves.
public let fixtureJobs: [any ProcessJob.Type] = [Square.self, AsyncIncrement.self, Flaky.self, Payload.self, Spin.self]
