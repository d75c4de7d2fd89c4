import Testing
import SpindleKernel
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

@Suite("Restart policy, spawn waits, buffers, lines and caps (state machines on a ManualClock)")
struct SupervisionStateMachineTests {
    @Test(".onFailure(2): two restarts after the backoff, then failed with the reason; stop cancels a pending restart")
    func restartPolicy() {
        let clock = ManualClock()
        var p = ProcLifecycle(grace: .seconds(1), restart: .onFailure(maxRestarts: 2, backoff: .seconds(3)))
        _ = p.spawned(pid: 10, now: clock.now())
        _ = p.announcedReady()
        let killed = ProcState.killed(signal: 9)
        #expect(p.signaled(9, now: clock.now()) == [.died(killed, wasReady: true, restarting: true), .report(.starting),
                                                     .armTimer(clock.now() + .seconds(3))])
        #expect(p.state == .starting && p.restarts == 1 && p.pid == nil)
        clock.advance(by: .milliseconds(2999))
        #expect(p.poll(now: clock.now()) == [.armTimer(clock.now() + .milliseconds(1))], "not before the backoff")
        #expect(p.spawned(pid: 11, now: clock.now()) == [], "no start while the backoff runs")
        clock.advance(by: .milliseconds(1))
        #expect(p.poll(now: clock.now()) == [.restart])
        #expect(p.spawned(pid: 11, now: clock.now()) == [.report(.running)])
        let exit3 = ProcState.stopped(exitCode: 3, stderrTail: ["boom"])
        #expect(p.exited(code: 3, stderrTail: ["boom"], now: clock.now()).first == .died(exit3, wasReady: false, restarting: true))
        clock.advance(by: .seconds(3))
        #expect(p.poll(now: clock.now()) == [.restart])
        _ = p.spawned(pid: 12, now: clock.now())
        let last = p.signaled(SIGSEGV, now: clock.now())
        #expect(last.first == .died(.killed(signal: SIGSEGV), wasReady: false, restarting: false))
        guard case .failed(let why) = p.state else { Issue.record("state \(p.state)"); return }
        #expect(why.contains("after 2 restarts (limit 2)"))
        #expect(p.restarts == 2)

        var q = ProcLifecycle(grace: .seconds(1), restart: .onFailure(maxRestarts: 5, backoff: .seconds(10)))
        _ = q.spawned(pid: 1, now: .zero)
        _ = q.signaled(9, now: .zero)
        #expect(q.stop(now: .zero) == [.report(.killed(signal: 9))], "a stop during the backoff ends it as it died")
        #expect(q.poll(now: .zero + .seconds(20)) == [])
    }

    @Test("a clean exit and a stop are not failures: no died, no restart; .never reports died and stays ended")
    func notFailures() {
        var clean = ProcLifecycle(grace: .seconds(1), restart: .onFailure(maxRestarts: 3, backoff: .zero))
        _ = clean.spawned(pid: 1, now: .zero)
        #expect(clean.exited(code: 0, stderrTail: [], now: .zero) == [.report(.stopped(exitCode: 0, stderrTail: []))])
        var stopped = ProcLifecycle(grace: .seconds(1), restart: .onFailure(maxRestarts: 3, backoff: .zero))
        _ = stopped.spawned(pid: 1, now: .zero)
        _ = stopped.stop(now: .zero)
        #expect(stopped.signaled(SIGTERM, now: .zero) == [.report(.killed(signal: SIGTERM))])
        var never = ProcLifecycle(grace: .seconds(1))
        _ = never.spawned(pid: 1, now: .zero)
        _ = never.announcedReady()
        #expect(never.signaled(9, now: .zero) == [.died(.killed(signal: 9), wasReady: true, restarting: false),
                                                  .report(.killed(signal: 9))])
    }

    @Test("Readiness.started: running is ready at once; the spawn wait counts ranks that already ended")
    func readinessStarted() {
        var p = ProcLifecycle(grace: .seconds(1), readiness: .started)
        #expect(p.spawned(pid: 5, now: .zero) == [.report(.running), .report(.ready)])
        var w = RankWait(goal: .allStarted, ranks: 3, idle: .seconds(1), now: .zero)
        w.record(rank: 0, state: .ready, now: .zero)
        w.record(rank: 1, state: .running, now: .zero)
        #expect(w.record(rank: 2, state: .stopped(exitCode: 0, stderrTail: []), now: .zero) == nil)
        #expect(w.record(rank: 1, state: .ready, now: .zero) != nil)
        var f = RankWait(goal: .allStarted, ranks: 2, idle: .seconds(1), now: .zero)
        #expect(f.record(rank: 1, state: .failed(reason: "ENOENT"), now: .zero) == .rankFailed(rank: 1, [.timeout, .failed(reason: "ENOENT")]))
    }

    @Test("rank waits follow restarts: a later start replaces a final state, an earlier report is ignored")
    func generations() {
        var w = RankWait(goal: .allReady, ranks: 1, idle: .seconds(1), now: .zero)
        w.record(rank: 0, state: .ready, restarts: 1, now: .zero)
        #expect(w.outcome != nil)
        let s = RankWait(goal: .allFinal, ranks: 1, idle: .seconds(1), now: .zero, initial: [.killed(signal: 9)], generations: [0])
        #expect(s.outcome == .reached([.killed(signal: 9)]))
        var r = RankWait(goal: .allReady, ranks: 1, idle: .seconds(1), now: .zero)
        r.record(rank: 0, state: .starting, restarts: 2, now: .zero)
        r.record(rank: 0, state: .stopped(exitCode: 1, stderrTail: []), restarts: 1, now: .zero)
        #expect(r.outcome == nil, "a report of an earlier start is ignored")
        #expect(r.record(rank: 0, state: .ready, restarts: 2, now: .zero) == .reached([.ready]))
        #expect(ProcMesh.merged(ProcStatus(mesh: "m", rank: 0, state: .killed(signal: 9), pid: 4, restarts: 0),
                                ProcStatus(mesh: "m", rank: 0, state: .starting, restarts: 1)).state == .starting)
        #expect(ProcMesh.merged(ProcStatus(mesh: "m", rank: 0, state: .hostLost(reason: "x"), pid: 4),
                                ProcStatus(mesh: "m", rank: 0, state: .ready)).pid == 4, "the agent's word replaces hostLost")
    }

    @Test("a bounded buffer keeps its capacity, drops the rest and says where and how many")
    func boundedBuffer() {
        var b = BoundedBuffer<Int>(capacity: 2)
        let kept = [b.append(1), b.append(2), b.append(3), b.append(4)]
        #expect(kept == [true, true, false, false])
        b.recordMissed(5)
        func next() -> String {
            switch b.next() {
            case .element(let e)?: return "\(e)"
            case .missed(let n)?: return "missed \(n)"
            case nil: return "-"
            }
        }
        #expect(next() == "1")
        let roomAgain = b.append(6)
        #expect(roomAgain, "room again after a read")
        #expect([next(), next(), next(), next()] == ["2", "missed 7", "6", "-"])
        #expect(b.totalMissed == 7)
    }

    @Test("lines: any split gives the same lines; long lines are cut and marked; CRLF and a last partial line")
    func lines() {
        let text = Array("one\r\ntwo\nthree".utf8)
        for split in 0...text.count {
            var a = LineAssembler(maxLineBytes: 100)
            var out = a.feed(Array(text[..<split]))
            out += a.feed(Array(text[split...]))
            if let last = a.finish() { out.append(last) }
            #expect(out == ["one", "two", "three"], "split at \(split)")
        }
        var cut = LineAssembler(maxLineBytes: 4)
        #expect(cut.feed(Array("abcdefgh\nxy\n".utf8)) == ["abcd…", "xy"])
        #expect(cut.finish() == nil)
    }

    @Test("admission names the limit a spawn would exceed")
    func admission() {
        var limits = HostAgent.Limits()
        limits.maxProcsPerClient = 4
        limits.maxProcsPerAgent = 6
        limits.maxBootstrapBytes = 64
        func request(_ n: Int, env: Int = 0) -> SpawnRequest {
            SpawnRequest(mesh: "m", procs: (0..<n).map { ProcSpec(rank: $0, command: BootstrapCommand(
                program: "sh", environment: env > 0 ? ["E": String(repeating: "x", count: env)] : [:])) },
                         worldSize: n, hostRank: 0, clientAddress: nil)
        }
        #expect(SpawnAdmission.check(request(2), liveForOwner: 2, liveTotal: 2, limits: limits) == nil)
        #expect(SpawnAdmission.check(request(3), liveForOwner: 2, liveTotal: 2, limits: limits)
                == .limitExceeded(.procsPerClient(requested: 3, live: 2, limit: 4)))
        #expect(SpawnAdmission.check(request(2), liveForOwner: 0, liveTotal: 5, limits: limits)
                == .limitExceeded(.procsPerAgent(requested: 2, live: 5, limit: 6)))
        #expect(SpawnAdmission.check(request(1, env: 100), liveForOwner: 0, liveTotal: 0, limits: limits)
                == .limitExceeded(.bootstrapBytes(rank: 0, bytes: 106, limit: 64)))
    }
}
