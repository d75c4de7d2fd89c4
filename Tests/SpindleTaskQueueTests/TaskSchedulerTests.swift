import TaskQueueTestSupport
import SpindleKernel
import Testing
@testable import SpindleTaskQueue

/// Drives TaskScheduler by hand on a ManualClock: no threads, no backend.
@Suite("TaskScheduler state machine")
struct TaskSchedulerTests {
    typealias Scheduler = TaskScheduler<ScriptKind>
    typealias Action = Scheduler.Action

    let recorder = Recorder<ScriptEvent>()
    let clock = ManualClock()

    func makeScheduler(workers: Int = 1, prefetch: Int = 1, limit: Int = .max) -> Scheduler {
        var s = Scheduler(kind: ScriptKind(recorder: recorder), workers: workers, prefetch: prefetch, limit: limit)
        _ = s.startWorkers()
        return s
    }

    /// The task names dispatched by these actions, per worker.
    func dispatched(_ actions: [Action]) -> [(WorkerID, [String])] {
        actions.compactMap {
            if case .dispatch(let w, let batch) = $0 { return (w, batch.map(\.task.name)) }
            return nil
        }
    }

    func reports(_ actions: [Action]) -> [(String?, TaskFailure)] {
        actions.compactMap {
            if case .report(let t, let r, _) = $0 { return (t?.name, r) }
            return nil
        }
    }

    func answer(_ s: inout Scheduler, _ w: WorkerID, _ names: [String]) -> [Action] {
        // seq numbers are not visible by name; answer in dispatch order via the snapshot.
        s.completed(w, pendingSeqs(s, w, names.count).enumerated().map {
            Completion(seq: $0.element, outcome: .response(names[$0.offset]))
        }, now: clock.now())
    }

    func pendingSeqs(_ s: Scheduler, _ w: WorkerID, _ n: Int) -> [UInt64] {
        Array(s.inFlightSeqs(of: w).prefix(n))
    }

    let w0 = WorkerID(slot: 0, generation: 0)

    @Test("higher priority first, FIFO within a priority")
    func priorityAndFIFO() {
        var s = makeScheduler()
        let sw = CancelSwitch()
        _ = s.enqueue([ScriptTask(name: "low1"), ScriptTask(name: "low2")], priority: .low, cancel: sw, deadline: nil, now: clock.now())
        _ = s.enqueue([ScriptTask(name: "n1"), ScriptTask(name: "n2")], priority: .normal, cancel: sw, deadline: nil, now: clock.now())
        _ = s.enqueue([ScriptTask(name: "high1")], priority: .high, cancel: sw, deadline: nil, now: clock.now())
        var order: [String] = []
        var actions = s.workerReady(w0, now: clock.now())
        while let (w, names) = dispatched(actions).first {
            order += names
            actions = answer(&s, w, names)
        }
        #expect(order == ["high1", "n1", "n2", "low1", "low2"])
        #expect(s.isDrained)
        #expect(s.counters.completed == 5)
    }

    @Test("a task only an old worker matches waits for one")
    func matchingByCompetence() {
        var s = makeScheduler()
        let sw = CancelSwitch()
        _ = s.enqueue([ScriptTask(name: "needs-old", needsOld: true), ScriptTask(name: "plain")],
                      priority: .normal, cancel: sw, deadline: nil, now: clock.now())
        let first = dispatched(s.workerReady(w0, now: clock.now()))
        #expect(first.first?.1 == ["plain"], "a fresh worker skips the task it does not match")
        let second = dispatched(answer(&s, w0, ["plain"]))
        #expect(second.first?.1 == ["needs-old"], "once old, the worker takes it")
    }

    @Test("a task no worker matches stays queued")
    func unmatchedWaits() {
        var s = makeScheduler()
        _ = s.enqueue([ScriptTask(name: "needs-old", needsOld: true)], priority: .normal,
                      cancel: CancelSwitch(), deadline: nil, now: clock.now())
        let actions = s.workerReady(w0, now: clock.now())
        #expect(dispatched(actions).isEmpty)
        #expect(s.queuedCount == 1)
        #expect(!s.isDrained)
    }

    @Test(".stay injects tasks under the parent's cancel switch; cancelling the parent removes them")
    func stayInjectionInheritsSwitch() {
        var s = makeScheduler()
        let parentSwitch = CancelSwitch()
        _ = s.enqueue([ScriptTask(name: "parent", decision: "c1,c2")], priority: .normal,
                      cancel: parentSwitch, deadline: nil, now: clock.now())
        _ = s.enqueue([ScriptTask(name: "hold-other")], priority: .low, cancel: CancelSwitch(), deadline: nil, now: clock.now())
        _ = s.workerReady(w0, now: clock.now())
        let next = dispatched(answer(&s, w0, ["parent"]))
        #expect(next.first?.1 == ["c1"], "injected children queue at the parent's priority")
        #expect(s.queuedCount == 2)
        let cancelled = s.cancel(parentSwitch, now: clock.now())
        let reported = reports(cancelled)
        #expect(Set(reported.map(\.0)) == ["c1", "c2"])
        #expect(reported.allSatisfy { $0.1 == .cancelled })
        #expect(cancelled.contains { if case .kill(w0) = $0 { true } else { false } }, "c1 was running: its worker dies")
        #expect(s.queuedCount == 1, "only the unrelated task is left")
    }

    @Test(".end retires the worker and starts a fresh one in its slot")
    func endReplacesWorker() {
        var s = makeScheduler()
        _ = s.enqueue([ScriptTask(name: "a", decision: "end"), ScriptTask(name: "b")], priority: .normal,
                      cancel: CancelSwitch(), deadline: nil, now: clock.now())
        _ = s.workerReady(w0, now: clock.now())
        let actions = answer(&s, w0, ["a"])
        let w1 = WorkerID(slot: 0, generation: 1)
        #expect(actions.contains { if case .retire(w0) = $0 { true } else { false } })
        #expect(actions.contains { if case .start(w1) = $0 { true } else { false } })
        #expect(dispatched(actions).isEmpty, "the replacement is not ready yet")
        #expect(dispatched(s.workerReady(w1, now: clock.now())).first?.1 == ["b"])
        #expect(s.snapshot().workers.map(\.id) == [w1])
    }

    @Test("with prefetch, answers after an .end in the same batch are used, not run again")
    func endWithPrefetchKeepsLaterAnswers() {
        var s = makeScheduler(workers: 1, prefetch: 4)
        _ = s.enqueue([ScriptTask(name: "a", decision: "end"), ScriptTask(name: "b", decision: "b1"),
                       ScriptTask(name: "c"), ScriptTask(name: "d")],
                      priority: .normal, cancel: CancelSwitch(), deadline: nil, now: clock.now())
        #expect(dispatched(s.workerReady(w0, now: clock.now())).first?.1 == ["a", "b", "c", "d"])
        // The worker answered a, b and c in one batch; d is still running when a ends it.
        let actions = answer(&s, w0, ["a", "b", "c"])
        let used = recorder.events.compactMap { if case .used(let n, _) = $0 { n } else { nil } }
        #expect(used == ["a", "b", "c"], "b and c were answered: used once, never requeued")
        #expect(actions.contains { if case .kill(w0) = $0 { true } else { false } }, "d is behind: the worker is killed")
        let w1 = WorkerID(slot: 0, generation: 1)
        #expect(actions.contains { if case .start(w1) = $0 { true } else { false } })
        #expect(s.queuedCount == 2, "d requeued, b1 injected by b's answer")
        var order: [String] = []
        var next = s.workerReady(w1, now: clock.now())
        while let (w, names) = dispatched(next).first {
            order += names
            next = answer(&s, w, names)
        }
        #expect(order == ["d", "b1"], "the unanswered task first, then the injected one")
        #expect(s.isDrained)
    }

    @Test("expired tasks are skipped and reported: deadline passed, or no request")
    func expiry() {
        var s = makeScheduler()
        let deadline = clock.now() + .milliseconds(10)
        _ = s.enqueue([ScriptTask(name: "late")], priority: .normal, cancel: CancelSwitch(), deadline: deadline, now: clock.now())
        _ = s.enqueue([ScriptTask(name: "stale", stale: true), ScriptTask(name: "ok")], priority: .normal,
                      cancel: CancelSwitch(), deadline: nil, now: clock.now())
        #expect(s.hasDeadlines)
        clock.advance(by: .milliseconds(20))
        let ticked = s.tick(now: clock.now())
        #expect(reports(ticked).map(\.0) == ["late"])
        #expect(reports(ticked).first?.1 == .expired)
        let actions = s.workerReady(w0, now: clock.now())
        #expect(reports(actions).map(\.0) == ["stale"])
        #expect(dispatched(actions).first?.1 == ["ok"])
        #expect(s.counters.expired == 2)
        #expect(!s.hasDeadlines)
    }

    @Test("cancelling a running task kills its worker, reports once, and replaces it")
    func cancelRunning() {
        var s = makeScheduler(workers: 2)
        let sw = CancelSwitch()
        _ = s.enqueue([ScriptTask(name: "victim")], priority: .normal, cancel: sw, deadline: nil, now: clock.now())
        _ = s.enqueue([ScriptTask(name: "other")], priority: .normal, cancel: CancelSwitch(), deadline: nil, now: clock.now())
        _ = s.workerReady(w0, now: clock.now())
        let actions = s.cancel(sw, now: clock.now())
        #expect(reports(actions).map(\.0) == ["victim"])
        #expect(actions.contains { if case .kill(w0) = $0 { true } else { false } })
        #expect(actions.contains { if case .start(WorkerID(slot: 0, generation: 1)) = $0 { true } else { false } })
        #expect(s.cancel(sw, now: clock.now()).isEmpty, "a second cancel reports nothing")
        // A late answer from the killed worker is ignored.
        #expect(s.completed(w0, [Completion(seq: 1, outcome: .response("victim"))], now: clock.now()).isEmpty)
        #expect(s.queuedCount == 1)
    }

    @Test("a worker dying mid-task reports that task once and loses nothing queued, also with prefetch")
    func workerDeath() {
        var s = makeScheduler(workers: 1, prefetch: 4)
        _ = s.enqueue((1...6).map { ScriptTask(name: "t\($0)") }, priority: .normal,
                      cancel: CancelSwitch(), deadline: nil, now: clock.now())
        let first = dispatched(s.workerReady(w0, now: clock.now()))
        #expect(first.first?.1 == ["t1", "t2", "t3", "t4"])
        let died = s.workerDied(w0, detail: "signal 9", now: clock.now())
        #expect(reports(died).map(\.0) == ["t1"])
        #expect(s.queuedCount == 5)
        #expect(s.workerDied(w0, detail: "again", now: clock.now()).isEmpty, "reported once")
        let w1 = WorkerID(slot: 0, generation: 1)
        var order: [String] = []
        var actions = s.workerReady(w1, now: clock.now())
        while let (w, names) = dispatched(actions).first {
            order += names
            actions = answer(&s, w, names)
        }
        #expect(order == ["t2", "t3", "t4", "t5", "t6"], "requeued tasks keep their order, ahead of the rest")
        #expect(s.isDrained)
    }

    @Test("enqueue accepts only what fits under the limit; injected tasks are never refused")
    func limit() {
        var s = makeScheduler(limit: 3)
        let r = s.enqueue((1...5).map { ScriptTask(name: "t\($0)") }, priority: .normal,
                          cancel: CancelSwitch(), deadline: nil, now: clock.now())
        #expect(r.accepted == 3)
        #expect(s.freeSpace == 0)
    }

    @Test("a slot that cannot start gives up and queued tasks are reported, not lost")
    func startFailures() {
        var s = Scheduler(kind: ScriptKind(recorder: recorder), workers: 1, maxStartFailures: 2)
        _ = s.startWorkers()
        _ = s.enqueue([ScriptTask(name: "a")], priority: .normal, cancel: CancelSwitch(), deadline: nil, now: clock.now())
        _ = s.workerDied(w0, detail: "exec failed", now: clock.now())
        let last = s.workerDied(WorkerID(slot: 0, generation: 1), detail: "exec failed", now: clock.now())
        #expect(reports(last).contains { $0.0 == "a" })
        #expect(s.allWorkersDead)
        #expect(s.queuedCount == 0)
    }

    @Test("shutdown reports queued tasks, lets the running one finish, then retires")
    func shutdown() {
        var s = makeScheduler()
        _ = s.enqueue([ScriptTask(name: "running"), ScriptTask(name: "queued")], priority: .normal,
                      cancel: CancelSwitch(), deadline: nil, now: clock.now())
        _ = s.workerReady(w0, now: clock.now())
        let begun = s.beginShutdown()
        #expect(reports(begun).map(\.0) == ["queued"])
        #expect(!s.allWorkersDead)
        let done = answer(&s, w0, ["running"])
        #expect(done.contains { if case .retire(w0) = $0 { true } else { false } })
        #expect(s.allWorkersDead)
        #expect(s.enqueue([ScriptTask(name: "late")], priority: .normal, cancel: CancelSwitch(),
                          deadline: nil, now: clock.now()).accepted == 0)
    }

    @Test("prefetchTarget: a worker holds as many tasks as it runs in the target time")
    func adaptivePrefetch() {
        var s = Scheduler(kind: ScriptKind(recorder: recorder), workers: 1, prefetch: 64,
                          prefetchTarget: .milliseconds(1))
        _ = s.startWorkers()
        _ = s.enqueue((0..<200).map { ScriptTask(name: "t\($0)") }, priority: .normal, cancel: CancelSwitch(),
                      deadline: nil, now: clock.now())
        var batch = dispatched(s.workerReady(w0, now: clock.now())).first?.1 ?? []
        #expect(batch.count == 1, "one task until the first answer tells how long tasks take")
        clock.advance(by: .microseconds(10))
        batch = dispatched(answer(&s, w0, batch)).first?.1 ?? []
        #expect(batch.count == 64, "10 µs a task: the full prefetch of 64 fits in 1 ms")
        clock.advance(by: .milliseconds(64))
        batch = dispatched(answer(&s, w0, batch)).first?.1 ?? []
        // The moving average is now 0.75 × 10 µs + 0.25 × 1 ms = 257.5 µs a task.
        #expect(batch.count == 3, "1 ms a task lately: only what fits in 1 ms")
    }
}
