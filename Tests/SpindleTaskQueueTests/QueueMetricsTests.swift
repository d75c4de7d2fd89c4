import MetricsTestKit
import SpindleKernel
import Synchronization
import TaskQueueTestSupport
import Testing
@testable import SpindleTaskQueue

/// What a task queue publishes through swift-metrics (docs/operations.md, `spindle_queue_*`).
@Suite("Task queue metrics", .timeLimit(.minutes(1)))
struct QueueMetricsTests {
    struct Oops: Error {}
    let kind = [("kind", ClosureKind.name)]

    func closureQueue(workers: Int, metrics: TestMetrics) async throws -> TaskQueue<ClosureKind> {
        var config = TaskQueue<ClosureKind>.Configuration(workers: workers)
        config.metricsFactory = metrics
        config.shutdownGrace = .seconds(5)
        return try await TaskQueue(kind: ClosureKind(), backend: ThreadWorkerBackend<ClosureKind>(joinTimeout: .seconds(5)),
                                   configuration: config)
    }

    @Test("tasks enqueued, completed and failed by a thrown error are counted; the worker gauge follows the pool")
    func counters() async throws {
        let metrics = TestMetrics()
        let queue = try await closureQueue(workers: 2, metrics: metrics)
        let workers = try metrics.expectGauge("spindle_queue_workers", kind)
        #expect(workers.lastValue == 2)
        var good: [TaskHandle<Int>] = []
        for i in 0..<5 { good.append(try await queue.submit { i * 2 }) }
        let bad = [try await queue.submit { () throws -> Int in throw Oops() },
                   try await queue.submit { () throws -> Int in throw Oops() }]
        for (i, h) in good.enumerated() { #expect(try await h.value == i * 2) }
        for h in bad { #expect(await h.result.failure?.error is Oops) }
        await queue.join()
        #expect(try metrics.expectCounter("spindle_queue_enqueued_total", kind).totalValue == 7)
        #expect(try metrics.expectCounter("spindle_queue_completed_total", kind).totalValue == 5)
        #expect(try metrics.expectCounter("spindle_queue_failed_total", kind + [("reason", "error")]).totalValue == 2)
        #expect(try metrics.expectCounter("spindle_queue_failed_total", kind + [("reason", "cancelled")]).totalValue == 0)
        #expect(try metrics.expectGauge("spindle_queue_depth", kind).lastValue == 0)
        #expect(workers.lastValue == 2)
        await queue.shutdown()
        #expect(workers.lastValue == 0, "a shut-down queue has no live worker")
    }

    @Test("the depth gauge counts tasks waiting for a worker; a cancelled one counts as failed, cancelled")
    func depth() async throws {
        let metrics = TestMetrics()
        let queue = try await closureQueue(workers: 1, metrics: metrics)
        let release = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        let blocker = try await queue.submit { () -> Int in
            started.store(true, ordering: .releasing)
            let clock = ContinuousClock()
            let until = clock.now + .seconds(30)
            while !release.load(ordering: .acquiring) && clock.now < until {}
            return 1
        }
        #expect(await waitFor { started.load(ordering: .acquiring) })
        let queued = [try await queue.submit { 2 }, try await queue.submit { 3 }, try await queue.submit { 4 }]
        let depth = try metrics.expectGauge("spindle_queue_depth", kind)
        #expect(depth.lastValue == 3)
        queued[0].cancel()
        #expect(await queued[0].result == .failure(.cancelled))
        #expect(depth.lastValue == 2)
        #expect(try metrics.expectCounter("spindle_queue_failed_total", kind + [("reason", "cancelled")]).totalValue == 1)
        release.store(true, ordering: .releasing)
        #expect(try await blocker.value == 1)
        #expect(try await queued[1].value == 3)
        #expect(try await queued[2].value == 4)
        await queue.join()
        #expect(depth.lastValue == 0)
        #expect(try metrics.expectCounter("spindle_queue_completed_total", kind).totalValue == 3)
        await queue.shutdown()
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}
