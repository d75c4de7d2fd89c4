import CLibUV
import Synchronization

/// A fixed set of event loops, one thread each, handed out round robin by ``next()``.
public final class EventLoopGroup: Sendable {
    /// The loops, in creation order (named `<namePrefix>-0`, `-1`, …).
    public let loops: [EventLoop]
    private let counter = Atomic<Int>(0)

    /// Starts `loopCount` loops (default: one per available core).
    /// - Throws: `EventLoopError` when a loop cannot start; the loops already started are shut down.
    public init(loopCount: Int = EventLoopGroup.defaultLoopCount, namePrefix: String = "spindle-loop") throws(EventLoopError) {
        var loops: [EventLoop] = []
        for index in 0..<max(1, loopCount) {
            do {
                loops.append(try EventLoop(name: "\(namePrefix)-\(index)"))
            } catch {
                let started = loops
                Task { for loop in started { await loop.shutdown() } }
                throw error
            }
        }
        self.loops = loops
    }

    /// The number of online processors (at least 1).
    public static var defaultLoopCount: Int {
        max(1, Int(uv_available_parallelism()))
    }

    /// The next loop in round-robin order. Any thread.
    public func next() -> EventLoop {
        let n = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return loops[Int(UInt(bitPattern: n) % UInt(loops.count))]
    }

    /// Shuts every loop down (see ``EventLoop/shutdown()``).
    public func shutdown() async {
        await withTaskGroup(of: Void.self) { group in
            for loop in loops { group.addTask { await loop.shutdown() } }
        }
    }
}
