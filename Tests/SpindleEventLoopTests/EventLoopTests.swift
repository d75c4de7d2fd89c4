import Foundation
import SpindleEventLoop
import Synchronization
import Testing

@Suite("EventLoop")
struct EventLoopTests {
    @Test("execute from many threads runs everything, FIFO per producer, on the loop thread")
    func executeFromManyThreads() async throws {
        try await withLoop { loop in
            let producers = 8, perProducer = 2000
            let seen = Mutex<[[Int]]>(Array(repeating: [], count: producers))
            let offLoop = Atomic<Int>(0)
            let threads = (0..<producers).map { p in
                Thread {
                    for i in 0..<perProducer {
                        loop.execute {
                            if !loop.inEventLoop { offLoop.add(1, ordering: .relaxed) }
                            seen.withLock { $0[p].append(i) }
                        }
                    }
                }
            }
            for t in threads { t.start() }
            // Each producer finishes by asking the loop for a marker; all markers arrive after its items.
            try await withTimeout(30, "all producers") {
                while seen.withLock({ $0.reduce(0) { $0 + $1.count } }) < producers * perProducer {
                    _ = try await loop.submit { 0 }
                }
            }
            let strays = offLoop.load(ordering: .relaxed)
            #expect(strays == 0)
            let lists = seen.withLock { $0 }
            for p in 0..<producers {
                #expect(lists[p] == Array(0..<perProducer), "producer \(p) out of order")
            }
            #expect(!loop.inEventLoop)
        }
    }

    @Test("execute from the loop thread queues behind earlier work")
    func executeFromLoopIsQueued() async throws {
        try await withLoop { loop in
            let order = Mutex<[String]>([])
            let done = Promise<Void>()
            loop.execute {
                loop.execute {
                    order.withLock { $0.append("inner") }
                    done.fulfil(())
                }
                order.withLock { $0.append("outer") }
            }
            try await done.wait(10, "inner work")
            let seenOrder = order.withLock { $0 }
            #expect(seenOrder == ["outer", "inner"])
        }
    }

    @Test("timers fire in deadline order; a cancelled timer never fires")
    func timersOrderAndCancel() async throws {
        try await withLoop { loop in
            let fired = Mutex<[Int]>([])
            let last = Promise<Void>()
            loop.scheduleTimer(after: .milliseconds(60)) { fired.withLock { $0.append(60) }; last.fulfil(()) }
            loop.scheduleTimer(after: .milliseconds(20)) { fired.withLock { $0.append(20) } }
            let cancelled = loop.scheduleTimer(after: .milliseconds(30)) { fired.withLock { $0.append(30) } }
            loop.scheduleTimer(after: .milliseconds(40)) { fired.withLock { $0.append(40) } }
            cancelled.cancel()
            #expect(cancelled.isCancelled)
            try await last.wait(10, "the 60 ms timer")
            let order = fired.withLock { $0 }
            #expect(order == [20, 40, 60])
        }
    }

    @Test("a repeating timer repeats until cancelled and runs on the loop thread")
    func repeatingTimer() async throws {
        try await withLoop { loop in
            let ticks = Atomic<Int>(0)
            let three = Promise<Void>()
            let onLoop = Atomic<Bool>(true)
            let timer = loop.scheduleRepeating(every: .milliseconds(5)) {
                if !loop.inEventLoop { onLoop.store(false, ordering: .relaxed) }
                if ticks.add(1, ordering: .relaxed).newValue == 3 { three.fulfil(()) }
            }
            try await three.wait(10, "three ticks")
            timer.cancel()
            // After the cancel has been processed on the loop, no tick may follow.
            let atCancel = try await loop.submit { ticks.load(ordering: .relaxed) }
            let probe = Promise<Void>()
            loop.scheduleTimer(after: .milliseconds(30)) { probe.fulfil(()) }
            try await probe.wait(10, "probe timer")
            let after = ticks.load(ordering: .relaxed)
            let allOnLoop = onLoop.load(ordering: .relaxed)
            #expect(after == atCancel)
            #expect(allOnLoop)
            await loop.settle()
            #expect(await loop.openHandleCount == 0)
        }
    }

    @Test("submit returns the value and rethrows the error")
    func submitValuesAndErrors() async throws {
        struct Boom: Error, Equatable { let n: Int }
        try await withLoop { loop in
            let v = try await loop.submit { () -> Bool in loop.inEventLoop }
            #expect(v)
            #expect(try await loop.submit { 6 * 7 } == 42)
            await #expect(throws: Boom(n: 7)) { try await loop.submit { () throws -> Int in throw Boom(n: 7) } }
        }
    }

    actor PinnedCounter {
        let loop: EventLoop
        var count = 0
        init(loop: EventLoop) { self.loop = loop }
        nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
        func bump() -> (Int, Bool) {
            count += 1
            return (count, loop.inEventLoop)
        }
    }

    @Test("an actor pinned to the loop runs its methods on the loop thread")
    func actorPinnedToLoop() async throws {
        try await withLoop { loop in
            let counter = PinnedCounter(loop: loop)
            await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<100 { group.addTask { await counter.bump().1 } }
                for await onLoop in group { #expect(onLoop) }
            }
            #expect(await counter.bump().0 == 101)
        }
    }

    @Test("after shutdown, execute is refused and submit throws loopShutDown")
    func useAfterShutdown() async throws {
        let loop = try EventLoop(name: "closed-loop")
        await loop.shutdown()
        await loop.shutdown()  // idempotent
        #expect(loop.isShutDown)
        #expect(loop.closeStatus == 0)
        #expect(!loop.tryExecute {})
        await #expect(throws: EventLoopError.loopShutDown) { try await loop.submit { 1 } }
        do {
            _ = try await loop.submit { 1 }
        } catch let error as EventLoopError {
            #expect(error.isLoopShutDown)
            #expect(error.description.contains("closed-loop"))
        }
    }

    @Test("EventLoopGroup hands out its loops round robin")
    func groupRoundRobin() async throws {
        let group = try EventLoopGroup(loopCount: 3, namePrefix: "rr")
        #expect(group.loops.count == 3)
        let picked = (0..<7).map { _ in group.next() }
        for i in 0..<7 { #expect(picked[i] === group.loops[i % 3]) }
        #expect(group.loops.map(\.name) == ["rr-0", "rr-1", "rr-2"])
        let names = try await withThrowingTaskGroup(of: Bool.self) { tasks in
            for loop in group.loops { tasks.addTask { try await loop.submit { loop.inEventLoop } } }
            return try await tasks.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(names == [true, true, true])
        await group.shutdown()
        for loop in group.loops { #expect(loop.closeStatus == 0) }
    }
}
