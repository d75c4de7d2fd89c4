import Logging
import SpindleEventLoop
import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

extension HostAgent {
    /// Starts one proc's process; its pid, exit and stderr feed its lifecycle.
    func launch(_ key: ProcKey, executable: String, arguments: [String], environment: [String: String]) {
        var options = ProcessOptions(executable: executable, arguments: arguments)
        options.environment = environment
        options.stdin = .ignore
        options.stdout = configuration.forwardProcStdout ? .inherit : .ignore
        options.stderr = .pipe
        // Procs die with the agent, even under SIGKILL of the agent.
        options.parentDeathSignal = SIGKILL
        Task {
            let child: ChildProcess
            do throws(EventLoopError) {
                child = try await ChildProcess.spawn(on: loop, options)
            } catch {
                logger.warning("proc failed to start", metadata: ["mesh": "\(key.mesh)", "rank": "\(key.rank)", "error": "\(error)"])
                step(key) { e, _ in e.lifecycle.spawnFailed(reason: error.description) }
                return
            }
            step(key) { e, now in
                e.child = child
                e.stderrOpen = child.stderr != nil
                return e.lifecycle.spawned(pid: child.pid, now: now)
            }
            child.stderr?.start(
                onRead: { [weak self] bytes in
                    self?.state.withLock { $0.procs[key]?.stderr.append(bytes) }
                },
                onClose: { [weak self] _ in
                    self?.stderrClosed(key)
                })
            child.onExit { [weak self] status in
                self?.exited(key, status)
            }
        }
    }

    /// Sends a proc towards `stopped`/`killed`: SIGTERM now, SIGKILL after the grace.
    func stopProc(_ key: ProcKey) {
        step(key) { e, now in e.lifecycle.stop(now: now) }
    }

    private func exited(_ key: ProcKey, _ status: ExitStatus) {
        let waitForStderr = state.withLock { s -> Bool in
            s.procs[key]?.exit = status
            return s.procs[key]?.stderrOpen ?? false
        }
        if waitForStderr {
            // A grandchild may hold stderr open: report after a short wait regardless.
            let t = loop.scheduleTimer(after: .milliseconds(200)) { [weak self] in self?.finish(key) }
            state.withLock { $0.procs[key]?.timers.append(t) }
        } else {
            finish(key)
        }
    }

    private func stderrClosed(_ key: ProcKey) {
        let exited = state.withLock { s -> Bool in
            s.procs[key]?.stderrOpen = false
            return s.procs[key]?.exit != nil
        }
        if exited { finish(key) }
    }

    /// Reports the final state once the process has exited and its stderr is drained.
    private func finish(_ key: ProcKey) {
        step(key) { e, _ in
            switch e.exit {
            case .exited(let code)?: return e.lifecycle.exited(code: code, stderrTail: e.stderr.tail)
            case .signaled(let signal)?: return e.lifecycle.signaled(signal)
            case nil: return []
            }
        }
    }

    /// Runs one lifecycle step under the lock, then performs its actions outside it.
    func step(_ key: ProcKey, _ body: (inout ProcEntry, MonotonicInstant) -> [ProcLifecycle.Action]) {
        let now = configuration.clock.now()
        let work = state.withLock { s -> ([ProcLifecycle.Action], ControlLink?, ChildProcess?, ProcStatus)? in
            guard var e = s.procs[key] else { return nil }
            let actions = body(&e, now)
            if e.lifecycle.state.isTerminal {
                for t in e.timers { t.cancel() }
                e.timers.removeAll()
            }
            s.procs[key] = e
            return (actions, e.owner.flatMap { s.links[$0] }, e.child, e.status(key))
        }
        guard let (actions, owner, child, status) = work else { return }
        for action in actions {
            switch action {
            case .report(let procState):
                owner?.sendOrLog(.procState(ProcStatus(mesh: key.mesh, rank: key.rank, state: procState, pid: status.pid)))
                logger.debug("proc state", metadata: ["mesh": "\(key.mesh)", "rank": "\(key.rank)", "state": "\(procState)"])
                if procState.isTerminal { resumeIdleWaitersIfDone() }
            case .signal(let sig):
                do {
                    try child?.kill(sig)
                } catch {
                    logger.debug("signal not delivered", metadata: ["rank": "\(key.rank)", "signal": "\(sig)", "error": "\(error)"])
                }
            case .armTimer(let at):
                let t = loop.scheduleTimer(after: at - now) { [weak self] in
                    guard let self else { return }
                    self.step(key) { e, now in e.lifecycle.poll(now: now) }
                }
                state.withLock { $0.procs[key]?.timers.append(t) }
            }
        }
    }
}
