import Testing
import SpindleKernel
@testable import SpindleHostMesh

#if canImport(Glibc)
import Glibc
#endif

private let h0 = Address.tcp(host: "127.0.0.1", port: 7100)
private let h1 = Address.tcp(host: "127.0.0.1", port: 7101)
private let h2 = Address.unix(path: "/tmp/agent.sock")

private func succeeded(_ r: Result<Void, ConfigPushError>?) -> Bool {
    if case .success = r { return true }
    return false
}

@Suite("Attach bookkeeping (HM-1..HM-4)")
struct AttachBookkeepingTests {
    @Test("HM-1: success only after every host installed the snapshot")
    func allInstalled() {
        let clock = ManualClock()
        var a = AttachBookkeeping(mesh: "m", hosts: [h0, h1], digest: 9, now: clock.now(), timeout: .seconds(5))
        #expect(a.connected(rank: 0) == [.pushConfig(rank: 0)])
        #expect(a.connected(rank: 1) == [.pushConfig(rank: 1)])
        #expect(a.acknowledged(rank: 1, digest: 9) == [])
        #expect(a.result == nil)
        #expect(a.acknowledged(rank: 0, digest: 9) == [])
        #expect(succeeded(a.result))
    }

    @Test("zero hosts succeed at once")
    func zeroHosts() {
        let a = AttachBookkeeping(mesh: "m", hosts: [], digest: 1, now: .zero, timeout: .seconds(1))
        #expect(succeeded(a.result))
    }

    @Test("HM-2/HM-4: one failing host fails the attach and is named with its cause")
    func oneFails() throws {
        let clock = ManualClock()
        var a = AttachBookkeeping(mesh: "m", hosts: [h0, h1, h2], digest: 9, now: clock.now(), timeout: .seconds(5))
        _ = a.connected(rank: 0)
        _ = a.connected(rank: 2)
        _ = a.failed(rank: 1, .unreachable("ECONNREFUSED"))
        _ = a.acknowledged(rank: 0, digest: 9)
        #expect(a.result == nil, "waits for every host so the error lists all failures")
        #expect(a.failed(rank: 2, .rejectedConfig("no")) == [.abandon])
        guard case .failure(let e) = a.result else { Issue.record("expected failure"); return }
        #expect(e.failedHosts == [h1, h2])
        #expect(e.failures[0].cause == .unreachable("ECONNREFUSED"))
        #expect(e.failures[1].cause == .rejectedConfig("no"))
        #expect(e.description.contains("127.0.0.1:7101"))
        #expect(e.description.contains("unix:///tmp/agent.sock"))
        #expect(!e.description.contains(":7100"))
    }

    @Test("the deadline times out every silent host, and only those")
    func deadline() {
        let clock = ManualClock()
        var a = AttachBookkeeping(mesh: "m", hosts: [h0, h1, h2], digest: 9, now: clock.now(),
                                  timeout: .milliseconds(300))
        _ = a.connected(rank: 0)
        _ = a.acknowledged(rank: 0, digest: 9)
        _ = a.connected(rank: 1)
        clock.advance(by: .milliseconds(299))
        #expect(a.poll(now: clock.now()) == [])
        clock.advance(by: .milliseconds(1))
        #expect(a.poll(now: clock.now()) == [.abandon])
        guard case .failure(let e) = a.result else { Issue.record("expected failure"); return }
        #expect(e.failures.map(\.rank) == [1, 2])
        #expect(e.failures.allSatisfy { $0.cause == .timedOut(after: .milliseconds(300)) })
        // Late events change nothing.
        #expect(a.acknowledged(rank: 1, digest: 9) == [])
        guard case .failure(let again) = a.result else { Issue.record("expected failure"); return }
        #expect(again == e)
    }

    @Test("an acknowledgement of another snapshot is not an installation")
    func digestMismatch() {
        var a = AttachBookkeeping(mesh: "m", hosts: [h0], digest: 9, now: .zero, timeout: .seconds(1))
        _ = a.connected(rank: 0)
        #expect(a.acknowledged(rank: 0, digest: 8) == [.abandon])
        guard case .failure(let e) = a.result else { Issue.record("expected failure"); return }
        #expect(e.failures.first?.cause == .digestMismatch(expected: 9, acknowledged: 8))
    }

    @Test("transport errors classify into the documented causes")
    func classification() {
        #expect(ConfigPushFailure(.closed(.authenticationFailed("bad mac"))) == .refusedAuthentication("bad mac"))
        #expect(ConfigPushFailure(.unreachable(h0, "ECONNREFUSED")) == .unreachable("ECONNREFUSED"))
        #expect(ConfigPushFailure(.closed(.closedByPeer)) == .connectionLost("closed by peer"))
    }
}

@Suite("Proc lifecycle")
struct ProcLifecycleTests {
    @Test("starting → running → ready → stopping → stopped")
    func happyPath() {
        let clock = ManualClock()
        var p = ProcLifecycle(grace: .seconds(2))
        #expect(p.state == .starting)
        #expect(p.spawned(pid: 42, now: clock.now()) == [.report(.running)])
        #expect(p.announcedReady() == [.report(.ready)])
        let stop = p.stop(now: clock.now())
        #expect(stop == [.report(.stopping), .signal(SIGTERM), .armTimer(clock.now() + .seconds(2))])
        #expect(p.exited(code: 0, stderrTail: [], now: clock.now()) == [.report(.stopped(exitCode: 0, stderrTail: []))])
        #expect(p.poll(now: clock.now() + .seconds(3)) == [], "no SIGKILL after exit")
    }

    @Test("a ready announced before the agent saw the spawn complete is not lost")
    func readyBeforeSpawned() {
        let clock = ManualClock()
        var p = ProcLifecycle(grace: .seconds(2))
        #expect(p.announcedReady() == [], "nothing to report while starting")
        #expect(p.state == .starting)
        #expect(p.spawned(pid: 7, now: clock.now()) == [.report(.running), .report(.ready)])
        #expect(p.state == .ready)
    }

    @Test("SIGKILL only after the grace period")
    func grace() {
        let clock = ManualClock()
        var p = ProcLifecycle(grace: .seconds(2))
        _ = p.spawned(pid: 1, now: clock.now())
        _ = p.stop(now: clock.now())
        clock.advance(by: .milliseconds(1999))
        #expect(p.poll(now: clock.now()) == [.armTimer(clock.now() + .milliseconds(1))], "early: call again at the deadline")
        clock.advance(by: .milliseconds(1))
        #expect(p.poll(now: clock.now()) == [.signal(SIGKILL)])
        #expect(p.poll(now: clock.now()) == [], "SIGKILL is sent once")
        #expect(p.signaled(SIGKILL, now: clock.now()) == [.report(.killed(signal: SIGKILL))])
    }

    @Test("a stop during start takes effect once the process exists")
    func stopWhileStarting() {
        var p = ProcLifecycle(grace: .seconds(1))
        #expect(p.stop(now: .zero) == [])
        let a = p.spawned(pid: 3, now: .zero)
        #expect(a.first == .report(.running))
        #expect(a.contains(.signal(SIGTERM)))
        #expect(p.state == .stopping)
    }

    @Test("exit before ready, spawn failure and final states are final")
    func finals() {
        var p = ProcLifecycle(grace: .seconds(1))
        _ = p.spawned(pid: 3, now: .zero)
        let died = ProcState.stopped(exitCode: 1, stderrTail: ["oops"])
        #expect(p.exited(code: 1, stderrTail: ["oops"], now: .zero) == [.died(died, wasReady: false, restarting: false), .report(died)])
        #expect(p.announcedReady() == [])
        #expect(p.signaled(9, now: .zero) == [])
        #expect(p.stop(now: .zero) == [])
        var q = ProcLifecycle(grace: .seconds(1))
        #expect(q.spawnFailed(reason: "ENOENT") == [.report(.failed(reason: "ENOENT"))])
        #expect(q.spawned(pid: 1, now: .zero) == [])
    }
}

@Suite("Rank wait with idle timeout")
struct RankWaitTests {
    @Test("spawn: one host whose proc hangs gives [timeout, ready] after the idle timeout")
    func hangGivesTimeout() {
        let clock = ManualClock()
        var w = RankWait(goal: .allReady, ranks: 2, idle: .seconds(1), now: clock.now())
        clock.advance(by: .milliseconds(600))
        #expect(w.record(rank: 1, state: .running, now: clock.now()) == nil)
        clock.advance(by: .milliseconds(600))
        #expect(w.poll(now: clock.now()) == nil, "the update re-armed the idle timeout")
        #expect(w.record(rank: 1, state: .ready, now: clock.now()) == nil)
        clock.advance(by: .milliseconds(999))
        #expect(w.poll(now: clock.now()) == nil)
        clock.advance(by: .milliseconds(1))
        #expect(w.poll(now: clock.now()) == .timedOut(idle: .seconds(1), [.timeout, .ready]))
    }

    @Test("spawn: every rank ready reaches the goal; a rank ending first fails it with its exit")
    func readyAndFailure() {
        var w = RankWait(goal: .allReady, ranks: 2, idle: .seconds(1), now: .zero)
        w.record(rank: 0, state: .ready, now: .zero)
        #expect(w.record(rank: 1, state: .ready, now: .zero) == .reached([.ready, .ready]))
        var f = RankWait(goal: .allReady, ranks: 2, idle: .seconds(1), now: .zero)
        f.record(rank: 0, state: .running, now: .zero)
        let exit1 = ProcState.stopped(exitCode: 1, stderrTail: [])
        #expect(f.record(rank: 1, state: exit1, now: .zero) == .rankFailed(rank: 1, [.running, exit1]))
    }

    @Test("stop: waits for every rank to be final, a final state is never overwritten")
    func stop() {
        var w = RankWait(goal: .allFinal, ranks: 2, idle: .seconds(1), now: .zero, initial: [.ready, .ready])
        w.record(rank: 0, state: .killed(signal: 15), now: .zero)
        w.record(rank: 0, state: .stopping, now: .zero)
        #expect(w.states[0] == .killed(signal: 15))
        #expect(w.record(rank: 1, state: .stopped(exitCode: 0, stderrTail: []), now: .zero)
                == .reached([.killed(signal: 15), .stopped(exitCode: 0, stderrTail: [])]))
    }

    @Test("zero ranks are done at once; a query reports each rank once")
    func query() {
        #expect(RankWait(goal: .allReady, ranks: 0, idle: .seconds(1), now: .zero).outcome == .reached([]))
        var w = RankWait(goal: .allReported, ranks: 2, idle: .seconds(1), now: .zero)
        w.record(rank: 1, state: .running, now: .zero)
        #expect(w.poll(now: .zero + .seconds(1)) == .timedOut(idle: .seconds(1), [.timeout, .running]))
    }
}
