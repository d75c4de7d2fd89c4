// Distributed actors shared by the SpindleActors tests and the ActorPeerFixture executable:
// both must see the same types (a distributed function is named by its mangled name, which
// includes its module).
import Distributed
import SpindleActors
import SpindleKernel
import Synchronization

/// An error a distributed function throws that is `Codable`: it reaches the caller typed.
public struct FixtureError: Error, Codable, Equatable, Sendable {
    public var code: Int
    public var message: String
    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }
}

/// An error that is not `Codable`: it reaches the caller as `RemoteCallError`.
public struct PlainError: Error, CustomStringConvertible, Sendable {
    public var detail: String
    public init(detail: String) { self.detail = detail }
    public var description: String { "plain error: \(detail)" }
}

/// What happened to long-running work on a node, for tests to ask over a separate actor.
public final class WorkLog: Sendable {
    public static let shared = WorkLog()
    private let events = Mutex<[String]>([])
    public func record(_ e: String) { events.withLock { $0.append(e) } }
    public var all: [String] { events.withLock { $0 } }
}

/// The actor most tests call.
public distributed actor Calculator {
    public typealias ActorSystem = SpindleActorSystem

    private var total = 0

    public init(actorSystem: SpindleActorSystem) {
        self.actorSystem = actorSystem
    }

    public distributed func add(_ a: Int, _ b: Int) -> Int { a + b }

    /// Adds to a running total and returns it (order-sensitive: FIFO tests use it).
    public distributed func accumulate(_ x: Int) -> Int {
        total += x
        return total
    }

    /// A generic distributed function: its substitution travels with the call.
    public distributed func echo<T: Codable & Sendable>(_ value: T) -> T { value }

    /// A generic function returning a generic container.
    public distributed func pair<A: Codable & Sendable, B: Codable & Sendable>(_ a: A, _ b: B) -> [String] {
        ["\(a)", "\(b)"]
    }

    public distributed func failCodable(code: Int) throws -> Int {
        throw FixtureError(code: code, message: "refused \(code)")
    }

    public distributed func failPlain() throws {
        throw PlainError(detail: "not codable")
    }

    /// Sleeps `milliseconds` (on the task clock), then answers; throws when cancelled.
    public distributed func slow(milliseconds: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(milliseconds))
        return milliseconds
    }

    /// Works in 10 ms steps until cancelled (recording `started <tag>` and `cancelled <tag>`
    /// in `WorkLog.shared`), or for at most 60 s.
    public distributed func work(tag: String) async throws -> Int {
        WorkLog.shared.record("started \(tag)")
        var steps = 0
        while steps < 6_000 {
            if Task.isCancelled {
                WorkLog.shared.record("cancelled \(tag)")
                throw CancellationError()
            }
            try? await Task.sleep(for: .milliseconds(10))
            steps += 1
        }
        WorkLog.shared.record("finished \(tag)")
        return steps
    }

    /// Calls `other` (a reference passed as an argument) and adds one.
    public distributed func relay(to other: Calculator, _ x: Int) async throws -> Int {
        try await other.add(x, 1)
    }

    public distributed func whoAmI() -> ActorID { id }
}

/// Answers what happened on its node (a separate actor, so its calls do not queue behind a
/// busy `Calculator`).
public distributed actor Observer {
    public typealias ActorSystem = SpindleActorSystem

    public init(actorSystem: SpindleActorSystem) {
        self.actorSystem = actorSystem
    }

    public distributed func workLog() -> [String] { WorkLog.shared.all }

    /// Creates a calculator, then lets it go: its id names an actor that no longer exists.
    public distributed func resignedCalculatorID() -> ActorID {
        let c = Calculator(actorSystem: actorSystem)
        return c.id
    }

    public distributed func processID() -> Int32 { currentProcessID() }
}

#if canImport(Glibc)
import Glibc
#endif

public func currentProcessID() -> Int32 { getpid() }

/// The mesh actor of the actor mesh tests.
public distributed actor MeshCounter: MeshActor {
    public typealias ActorSystem = SpindleActorSystem
    public typealias SpawnArgument = Int

    private var value: Int
    private let rankOfProc: Int

    init(value: Int, rank: Int, actorSystem: SpindleActorSystem) {
        self.value = value
        self.rankOfProc = rank
        self.actorSystem = actorSystem
    }

    public static func spawn(argument: Int, context: MeshActorContext) async throws -> MeshCounter {
        MeshCounter(value: argument, rank: context.rank, actorSystem: context.actorSystem)
    }

    public distributed func add(_ n: Int) -> Int {
        value += n
        return value
    }

    public distributed func rank() -> Int { rankOfProc }

    public distributed func processID() -> Int32 { currentProcessID() }

    /// Answers after `milliseconds` (a call that stays pending meanwhile); records
    /// `holding <rank>` in the proc's `WorkLog` when it starts.
    public distributed func hold(milliseconds: Int) async throws -> Int {
        WorkLog.shared.record("holding \(rankOfProc)")
        try await Task.sleep(for: .milliseconds(milliseconds))
        return rankOfProc
    }
}

/// Reads a proc's `WorkLog` (a separate actor: its calls do not queue behind a busy counter).
public distributed actor MeshProbe: MeshActor {
    public typealias ActorSystem = SpindleActorSystem
    public typealias SpawnArgument = Int

    public static func spawn(argument: Int, context: MeshActorContext) async throws -> MeshProbe {
        MeshProbe(actorSystem: context.actorSystem)
    }

    public distributed func workLog() -> [String] { WorkLog.shared.all }
}

// The actor of docs/actors.md's example, verbatim (the example's procs run the fixture
// executable, which must know the type).
public distributed actor Counter: MeshActor {
    public typealias ActorSystem = SpindleActorSystem
    var value: Int
    init(value: Int, actorSystem: SpindleActorSystem) { self.value = value; self.actorSystem = actorSystem }
    public static func spawn(argument: Int, context: MeshActorContext) async throws -> Counter {
        Counter(value: argument, actorSystem: context.actorSystem)
    }
    public distributed func add(_ n: Int) -> Int { value += n; return value }
}
