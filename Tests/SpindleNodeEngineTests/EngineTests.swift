import SpindleKernel
import SpindleSupport
import Testing
@testable import SpindleNodeEngine

@Suite("Node engine poll cycle")
struct EngineTests {
    static func chain(_ n: Int) -> Program {
        var b = ProgramBuilder("chain")
        for i in 0...n { b.site("s\(i)", .int) }
        for i in 0..<n {
            b.op("op\(i)", .component(slot: "math", op: "double"), inputs: ["x": "s\(i)"], outputs: ["y": "s\(i + 1)"])
        }
        return b.program
    }

    @Test func anIdlePollSaysSo() throws {
        let (node, _) = try makeNode(Self.chain(1))
        let o = node.poll(now: .zero)
        #expect(o.status == .idle && o.opsFired == 0 && o.nextDeadline == nil)
    }

    @Test func chainRunsAndTheExecutionIsCollectedAfterOnePoll() throws {
        let (node, math) = try makeNode(Self.chain(10))
        let exec = try node.start(site: "s0", value: .int(1))
        let first = node.poll(now: .zero)
        #expect(first.opsFired == 10 && math.calls == 10)
        #expect(first.finished.map(\.id) == [exec])
        #expect(node.execution(exec)?.result("s10") == .int(1024))
        _ = node.poll(now: .zero)
        #expect(node.execution(exec) == nil)
        #expect(node.liveExecutions == 0)
    }

    @Test func theOpBudgetSplitsWorkAcrossPolls() throws {
        let (node, _) = try makeNode(Self.chain(10)) { $0.opBudgetPerPoll = 4 }
        try node.start(site: "s0", value: .int(1))
        let a = node.poll(now: .zero), b = node.poll(now: .zero), c = node.poll(now: .zero)
        #expect(a.status == .budgetExhausted && a.opsFired == 4 && a.nextDeadline == .zero)
        #expect(b.status == .budgetExhausted && b.opsFired == 4)
        #expect(c.status == .worked && c.opsFired == 2 && c.finished.count == 1)
    }

    @Test func anOpWaitsForAllRequiredInputsAndEmptyOutputsAbsorb() throws {
        var b = ProgramBuilder("add")
        b.site("a", .int); b.site("b", .int); b.site("sum", .int); b.site("gone")
        b.op("add", .component(slot: "math", op: "add"), inputs: ["a": "a", "b": "b"], outputs: ["sum": "sum"])
        b.op("sink", .component(slot: "math", op: "absorb"), inputs: ["x": "sum"])
        let (node, math) = try makeNode(b.program)
        try node.start(site: "a", value: .int(2))   // b never filled: add cannot fire
        let outs = pollUntilIdle(node, at: .zero)
        #expect(math.calls == 0)
        #expect(outs.finished.first?.results.isEmpty == true)
    }

    @Test func asyncCompletionFromAnotherThreadFiresConsumers() async throws {
        var b = ProgramBuilder("async")
        b.site("in"); b.site("mid"); b.site("out")
        b.op("later", .component(slot: "math", op: "later"), inputs: ["x": "in"], outputs: ["y": "mid"])
        b.op("d", .component(slot: "math", op: "double"), inputs: ["x": "mid"], outputs: ["y": "out"])
        let (node, math) = try makeNode(b.program)
        let exec = try node.start(site: "in", value: .int(1))
        let parked = node.poll(now: .zero)
        #expect(parked.finished.isEmpty && node.pendingAsyncCount == 1 && parked.nextDeadline != nil)
        let handle = math.handles[0]
        try await Task.detached { try handle.complete(.int(5)) }.value
        let outs = pollUntilIdle(node, at: ms(1))
        #expect(outs.finished.first?.id == exec)
        #expect(outs.finished.first?.result("out") == .int(10))
        #expect(node.pendingAsyncCount == 0)
    }

    @Test func sameCycleCompletionFiresInTheSamePoll() throws {
        var b = ProgramBuilder("now")
        b.site("in"); b.site("mid"); b.site("out", .int)
        b.op("now", .component(slot: "math", op: "now"), inputs: ["x": "in"], outputs: ["y": "mid"])
        b.op("d", .component(slot: "math", op: "double"), inputs: ["x": "mid"], outputs: ["y": "out"])
        let (node, _) = try makeNode(b.program)
        try node.start(site: "in", value: .int(4))
        let o = node.poll(now: .zero)
        #expect(o.finished.first?.result("out") == .int(8))
    }

    @Test func failureArrivesAsOpFailedWithTruncatedDetail() throws {
        var b = ProgramBuilder("fail")
        b.site("in"); b.site("out"); b.site("err", .string)
        b.op("later", .component(slot: "math", op: "later"), inputs: ["x": "in"], outputs: ["y": "out", "error": "err"])
        let (node, math) = try makeNode(b.program) { $0.failureDetailCap = 8 }
        let exec = try node.start(site: "in", value: .int(1))
        _ = node.poll(now: .zero)
        try math.handles[0].fail("abcdef€€€")
        let outs = pollUntilIdle(node, at: ms(1))
        #expect(outs.failures == [OpFailure(op: "later", execution: exec, reason: .failed("abcdef"))])
        #expect(outs.finished.first?.result("err") == .string("failed: abcdef"))
        #expect(outs.finished.first?.result("out") == nil)
    }

    @Test func synchronousFailureIsTyped() throws {
        var b = ProgramBuilder("f")
        b.site("in"); b.site("out")
        b.op("f", .component(slot: "math", op: "fail"), inputs: ["x": "in"], outputs: ["y": "out"])
        let (node, _) = try makeNode(b.program)
        let exec = try node.start(site: "in", value: .unit)
        #expect(pollUntilIdle(node, at: .zero).failures == [OpFailure(op: "f", execution: exec, reason: .failed("boom"))])
    }

    @Test func aPassedDeadlineFailsTheOpWithTimeoutAndALateCompletionIsIgnored() throws {
        var b = ProgramBuilder("deadline")
        b.site("in"); b.site("out")
        b.op("later", .component(slot: "math", op: "later"), inputs: ["x": "in"], outputs: ["y": "out"],
             params: ["timeoutMs": .int(50)])
        let (node, math) = try makeNode(b.program)
        let exec = try node.start(site: "in", value: .unit)
        let parked = node.poll(now: .zero)
        #expect(parked.nextDeadline == ms(50))
        #expect(node.poll(now: ms(49)).events.isEmpty)
        let expired = pollUntilIdle(node, at: ms(50))
        #expect(expired.failures == [OpFailure(op: "later", execution: exec, reason: .timeout)])
        #expect(expired.finished.first?.id == exec)
        try math.handles[0].complete(.int(1))
        let late = pollUntilIdle(node, at: ms(60))
        #expect(late.events.contains(.unknownCompletion(math.handles[0].command)))
        #expect(node.context.bus.count(.unknownCompletion) == 1)
    }

    @Test func unknownCommandIsIgnoredAndCounted() throws {
        let (node, _) = try makeNode(Self.chain(1))
        try node.ingress.push(.completion(CommandID(999), OpOutputs(.int(1))))
        let o = node.poll(now: .zero)
        #expect(o.events.map(\.event) == [.unknownCompletion(CommandID(999))])
        #expect(node.context.bus.count(.unknownCompletion) == 1)
    }

    @Test func thePendingCapFailsNewAsyncOpsWithCooldown() throws {
        var b = ProgramBuilder("cap")
        b.site("in"); b.site("out")
        b.op("later", .component(slot: "math", op: "later"), inputs: ["x": "in"], outputs: ["y": "out"])
        let (node, math) = try makeNode(b.program) { $0.maxPendingAsync = 2 }
        var execs: [ExecID] = []
        for _ in 0..<3 { execs.append(try node.start(site: "in", value: .unit)) }
        let o = node.poll(now: .zero)
        #expect(math.calls == 2)
        #expect(o.events.map(\.event).contains(.opFailed(OpFailure(op: "later", execution: execs[2], reason: .cooldown))))
    }

    @Test func oversizedResultsAndAFullQueueAreTypedErrorsCountedOnTheBus() throws {
        var b = ProgramBuilder("big")
        b.site("in"); b.site("out")
        b.op("later", .component(slot: "math", op: "later"), inputs: ["x": "in"], outputs: ["y": "out"])
        let (node, math) = try makeNode(b.program) { $0.resultCap = 16; $0.controlIngressCapacity = 2 }
        let exec = try node.start(site: "in", value: .unit)
        _ = node.poll(now: .zero)
        let h = math.handles[0]
        #expect(throws: IngressError.resultTooLarge(command: h.command, size: 5 + 100, cap: 16)) {
            try h.complete(.bytes(Array(repeating: 0, count: 100)))
        }
        try node.ingress.push(.start(site: "in", value: .unit))
        try node.ingress.push(.start(site: "in", value: .unit))
        #expect(throws: IngressError.full(lane: .control, capacity: 2)) { try node.ingress.push(.start(site: "in", value: .unit)) }
        let o = node.poll(now: ms(1))
        let events = o.events.map(\.event)
        #expect(events.contains(.ingressRejected(reason: "full (control lane)", count: 1)))
        #expect(events.contains(.ingressRejected(reason: "resultTooLarge", count: 1)))
        #expect(o.events.map(\.event).contains { if case .opFailed(let f) = $0 { return f.execution == exec } else { return false } })
    }

    @Test func aNodeScopedAnyLatchesOncePerWindowAndDeadlineMatchOncePerExecution() throws {
        var b = ProgramBuilder("latches")
        b.site("a"); b.site("b"); b.site("first"); b.site("matched"); b.site("late")
        b.syscall("any", .any, inputs: ["x": "a", "y": "b"], outputs: ["out": "first"],
                  params: ["group": .string("g"), "scope": .string("node"), "windowMs": .int(100)])
        b.syscall("dm", .deadlineMatch, inputs: ["x": "a", "y": "b"], outputs: ["matched": "matched", "late": "late"],
                  params: ["withinMs": .int(10)])
        let (node, _) = try makeNode(b.program)
        let e1 = try node.start(site: "a", value: .int(1))
        _ = node.poll(now: .zero)
        let r1 = node.execution(e1)!
        #expect(r1.result("first") == .int(1) && r1.result("matched") == .int(1))
        let e2 = try node.start(site: "b", value: .int(2))
        _ = node.poll(now: ms(1))
        let r2 = node.execution(e2)!
        #expect(r2.result("first") == nil)            // the group already fired on this node
        #expect(r2.result("matched") == .int(2))      // a fresh execution is unlatched
        #expect(node.context.syscalls.anyFiredGroups == ["g": ms(100)])
        let e3 = try node.start(site: "b", value: .int(3))
        _ = node.poll(now: ms(100))
        #expect(node.execution(e3)?.result("first") == .int(3))   // re-armed after the window
    }

    @Test func deadlineMatchLatchesWithinOneExecution() throws {
        var b = ProgramBuilder("dm")
        b.site("a"); b.site("slow"); b.site("matched"); b.site("late")
        b.syscall("nap", .sleep, inputs: ["in": "a"], outputs: ["out": "slow"], params: ["delayMs": .int(20)])
        b.syscall("dm", .deadlineMatch, inputs: ["x": "a", "y": "slow"], outputs: ["matched": "matched", "late": "late"],
                  params: ["withinMs": .int(10)])
        let (node, _) = try makeNode(b.program)
        let e = try node.start(site: "a", value: .int(1))
        _ = node.poll(now: .zero)
        let done = pollUntilIdle(node, at: ms(20)).finished
        #expect(done.first?.id == e)
        #expect(done.first?.results["matched"] == [.int(1)])
        #expect(done.first?.results["late"] == nil)      // the second arrival was latched out
    }

    @Test func sleepAfterAndTimersFireInOrder() throws {
        var b = ProgramBuilder("timers")
        b.site("in"); b.site("slept"); b.site("after"); b.site("tick")
        b.syscall("nap", .sleep, inputs: ["in": "in"], outputs: ["out": "slept"], params: ["delayMs": .int(30)])
        b.syscall("alarm", .after, outputs: ["out": "after"], params: ["delayMs": .int(10), "value": .string("ding")])
        b.op("arm", .component(slot: "tick", op: "arm"), inputs: ["x": "in"])
        var c = NodeConfiguration()
        c.seed = 1
        let node = Node(configuration: c, clock: ManualClock())
        let tick = TickComponent()
        try node.install(tick, at: "tick")
        try node.install(b.program)
        let e = try node.start(site: "in", value: .int(3))
        let first = node.poll(now: .zero)
        #expect(first.nextDeadline == ms(5))
        _ = node.poll(now: ms(5))
        #expect(tick.fired == [7])
        _ = node.poll(now: ms(10))
        #expect(node.poll(now: ms(29)).finished.isEmpty)
        let done = node.poll(now: ms(30)).finished
        #expect(done.first?.id == e)
        #expect(done.first?.result("after") == .string("ding") && done.first?.result("slept") == .int(3))
    }

    @Test func theTimerCapFailsSleepsBeyondIt() throws {
        var b = ProgramBuilder("cap")
        b.site("in"); b.site("out")
        b.syscall("nap", .sleep, inputs: ["in": "in"], outputs: ["out": "out"], params: ["delayMs": .int(5)])
        let (node, _) = try makeNode(b.program) { $0.timerCapacity = 1 }
        try node.start(site: "in", value: .unit)
        let second = try node.start(site: "in", value: .unit)
        let o = node.poll(now: .zero)
        #expect(o.events.map(\.event).contains(.opFailed(OpFailure(op: "nap", execution: second, reason: .capacity("timer heap is full (1 timers)")))))
    }

    @Test func storageSyscallsBehave() throws {
        var b = ProgramBuilder("store")
        b.site("stash"); b.site("flush"); b.site("held"); b.site("push"); b.site("pop"); b.site("popped")
        b.site("count"); b.site("counted"); b.site("rec"); b.site("recorded"); b.site("rng"); b.site("random", .uint)
        b.site("emit")
        b.syscall("stash", .holdStash, inputs: ["in": "stash"], params: ["name": .string("h")])
        b.syscall("flush", .holdFlush, inputs: ["trigger": "flush"], outputs: ["out": "held"], params: ["name": .string("h")])
        b.syscall("push", .serializeEnqueue, inputs: ["in": "push"], params: ["name": .string("q")])
        b.syscall("pop", .serializeDequeue, inputs: ["trigger": "pop"], outputs: ["out": "popped"], params: ["name": .string("q")])
        b.syscall("count", .incrMetric, inputs: ["in": "count"], outputs: ["out": "counted"], params: ["name": .string("hits"), "by": .int(2)])
        b.syscall("rec", .record, inputs: ["in": "rec"], outputs: ["out": "recorded"], params: ["name": .string("r")])
        b.syscall("rng", .rngU64, inputs: ["trigger": "rng"], outputs: ["out": "random"])
        b.syscall("emit", .emit, inputs: ["in": "emit"], params: ["event": .string("hello")])
        let (node, _) = try makeNode(b.program) { $0.seed = 99 }
        for v in 1...3 { try node.start(site: "stash", value: .int(Int64(v))) }
        try node.start(site: "push", value: .string("x"))
        try node.start(site: "push", value: .string("y"))
        try node.start(site: "count", value: .unit)
        try node.start(site: "count", value: .unit)
        try node.start(site: "rec", value: .int(5))
        _ = node.poll(now: .zero)
        let flush = try node.start(site: "flush", value: .unit)
        let pop = try node.start(site: "pop", value: .unit)
        let rng = try node.start(site: "rng", value: .unit)
        let emit = try node.start(site: "emit", value: .int(8))
        let o = node.poll(now: ms(1))
        #expect(node.execution(flush)?.result("held") == .list([.int(1), .int(2), .int(3)]))
        #expect(node.execution(pop)?.result("popped") == .string("x"))
        #expect(node.context.syscalls.counters["hits"] == 4)
        #expect(node.context.syscalls.records.values("r") == [.int(5)])
        var expected = SplitMix64(seed: 99)
        #expect(node.execution(rng)?.result("random") == .uint(expected.next()))
        #expect(o.appEvents == [AppEvent(name: "hello", value: .int(8), execution: emit, at: ms(1))])
    }

    @Test func limitAcquireWaitsForRelease() throws {
        var b = ProgramBuilder("limit")
        b.site("in"); b.site("held"); b.site("release"); b.site("released")
        b.syscall("acquire", .limitAcquire, inputs: ["in": "in"], outputs: ["out": "held"], params: ["name": .string("l"), "max": .int(1)])
        b.syscall("release", .limitRelease, inputs: ["in": "release"], outputs: ["out": "released"], params: ["name": .string("l")])
        let (node, _) = try makeNode(b.program)
        let first = try node.start(site: "in", value: .int(1))
        let second = try node.start(site: "in", value: .int(2))
        let o = node.poll(now: .zero)
        #expect(o.finished.map(\.id) == [first])
        #expect(node.context.syscalls.limits.waiting("l") == 1)
        try node.start(site: "release", value: .unit)
        let o2 = node.poll(now: ms(1))
        #expect(o2.finished.contains { $0.id == second && $0.result("held") == .int(2) })
        #expect(node.context.syscalls.limits.held("l") == 1)
    }

    @Test func busEventsStartSubscribedExecutions() throws {
        var b = ProgramBuilder("subs")
        b.site("in"); b.site("out"); b.site("failures", .string)
        b.op("f", .component(slot: "math", op: "fail"), inputs: ["x": "in"], outputs: ["y": "out"])
        b.subscribe(.opFailed, site: "failures")
        let (node, _) = try makeNode(b.program)
        try node.start(site: "in", value: .unit)
        let o = node.poll(now: .zero)
        #expect(o.finished.contains { $0.result("failures")?.stringValue?.hasPrefix("opFailed(") == true })
    }
}
