import Logging
import SpindleEventLoop
import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

extension HostAgent {
    /// Starts (or restarts) one proc under a keeper; its header, output, exit feed its lifecycle.
    func launch(_ key: ProcKey) {
        let prepared = state.withLock { s -> (LaunchSpec, String, UInt64, String)? in
            guard var e = s.procs[key], let keeper = s.keeper else { return nil }
            // Unique over every entry: a late callback of a replaced entry's child never
            // matches the entry that took its key.
            e.start = s.nextStart
            s.nextStart += 1
            e.child = nil
            e.exit = nil
            e.headerSeen = false
            e.openStreams = 2
            e.stdout = LineAssembler(maxLineBytes: configuration.limits.maxLineBytes)
            e.stderr = LineAssembler(maxLineBytes: configuration.limits.maxLineBytes)
            e.tail.removeAll()
            e.finishedAt = nil
            s.procs[key] = e
            return (e.launch, e.token, e.start, keeper)
        }
        guard let (spec, token, start, keeper) = prepared else { return }
        var environment = spec.environment
        environment[ProcEnvironment.tokenVariable] = token
        var options = ProcessOptions(
            executable: keeper,
            arguments: ["--parent", String(getpid()), "--", spec.executable, spec.argv0] + spec.arguments)
        options.environment = environment
        options.stdin = .ignore
        options.stdout = .pipe
        options.stderr = .pipe
        // The keeper gets its own session; the proc gets another (its process group).
        options.newProcessGroup = true
        options.shutdownSignal = Keeper.killSignal
        metrics.procsStarted.add()
        Task {
            let child: ChildProcess
            do throws(EventLoopError) {
                child = try await ChildProcess.spawn(on: loop, options)
            } catch {
                logger.warning("proc failed to start", metadata: ["mesh": "\(key.mesh)", "rank": "\(key.rank)", "error": "\(error)"])
                metrics.procsFailed.add()
                step(key, start: start) { e, _ in e.lifecycle.spawnFailed(reason: error.description) }
                return
            }
            let current = state.withLock { s -> Bool in
                guard s.procs[key]?.start == start else { return false }
                s.procs[key]!.child = child
                return true
            }
            guard current else {
                try? child.kill(Keeper.killSignal)
                return
            }
            child.stdout?.start(
                onRead: { [weak self] bytes in self?.output(key, start: start, .stdout, bytes) },
                onClose: { [weak self] _ in self?.streamClosed(key, start: start, .stdout) })
            child.stderr?.start(
                onRead: { [weak self] bytes in self?.output(key, start: start, .stderr, bytes) },
                onClose: { [weak self] _ in self?.streamClosed(key, start: start, .stderr) })
            child.onExit { [weak self] status in
                self?.exited(key, start: start, status)
            }
        }
    }

    /// Sends a proc towards `stopped`/`killed`: SIGTERM to its group now, SIGKILL after the grace.
    func stopProc(_ key: ProcKey) {
        step(key) { e, now in e.lifecycle.stop(now: now) }
    }

    // MARK: - Output

    /// Bytes from a proc's stdout or stderr: the keeper's header first (stdout), then lines,
    /// kept (stderr tail, recent lines) and pushed to the owner and followers.
    private func output(_ key: ProcKey, start: UInt64, _ stream: ProcStream, _ bytes: UnsafeRawBufferPointer) {
        var header: Int32?? = nil
        let sends = state.withLock { s -> [(ControlChannel, HostMeshMessage)] in
            guard var e = s.procs[key], e.start == start else { return [] }
            var lines: [String] = []
            if stream == .stdout {
                e.stdout.feed(bytes, into: &lines)
                if !e.headerSeen, !lines.isEmpty {
                    e.headerSeen = true
                    header = .some(Keeper.procPID(fromHeader: lines.removeFirst()))
                }
            } else {
                e.stderr.feed(bytes, into: &lines)
            }
            let sends = record(lines, stream, key: key, entry: &e, in: s)
            s.procs[key] = e
            return sends
        }
        for (c, m) in sends { c.sendOrLog(m) }
        if let header { started(key, start: start, procPID: header) }
    }

    /// The keeper's header told the proc's pid (nil: the first line was not a header).
    private func started(_ key: ProcKey, start: UInt64, procPID: Int32?) {
        let pid = procPID ?? state.withLock { $0.procs[key]?.child?.pid } ?? -1
        if procPID == nil {
            logger.error("keeper output did not start with its header", metadata: ["mesh": "\(key.mesh)", "rank": "\(key.rank)"])
        }
        step(key, start: start) { e, now in
            e.wasStarted = true
            return e.lifecycle.spawned(pid: pid, now: now)
        }
    }

    /// Keeps `lines` (stderr tail, recent lines) and returns the pushes for the proc's owner
    /// and followers; a receiver with too much unacknowledged gets a count instead.
    func record(_ texts: [String], _ stream: ProcStream, key: ProcKey, entry e: inout ProcEntry,
                in s: State) -> [(ControlChannel, HostMeshMessage)] {
        guard !texts.isEmpty else { return [] }
        let lines = texts.map { ProcLogLine(rank: key.rank, stream: stream, text: $0) }
        let keep = configuration.limits.retainedLogLines
        for l in lines {
            if stream == .stderr { e.tail.append(l.text) }
            if keep > 0 {
                if e.recent.count >= keep { e.recent.removeFirst() }
                e.recent.append(l)
            }
            if configuration.forwardProcStdout { print("[\(key.mesh) \(key.rank)] \(l.text)") }
        }
        var targets = e.followers
        if let n = e.notify { targets.insert(n) }
        var sends: [(ControlChannel, HostMeshMessage)] = []
        for t in targets {
            guard let c = s.sessions[t]?.channel else { continue }
            if c.queuedCount > configuration.limits.maxUnacknowledgedOutput {
                e.dropped[t, default: 0] += lines.count
                metrics.logLinesDropped.add(lines.count)
                continue
            }
            let dropped = e.dropped.removeValue(forKey: t) ?? 0
            sends.append((c, .procOutput(ProcOutput(mesh: key.mesh, lines: lines, dropped: dropped))))
        }
        return sends
    }

    private func streamClosed(_ key: ProcKey, start: UInt64, _ stream: ProcStream) {
        var startedNow: Int32?? = nil
        let (sends, finishNow) = state.withLock { s -> ([(ControlChannel, HostMeshMessage)], Bool) in
            guard var e = s.procs[key], e.start == start else { return ([], false) }
            var lines: [String] = []
            if stream == .stdout {
                if let last = e.stdout.finish() { lines.append(last) }
                if !e.headerSeen, !lines.isEmpty {
                    e.headerSeen = true
                    startedNow = .some(Keeper.procPID(fromHeader: lines.removeFirst()))
                }
            } else if let last = e.stderr.finish() {
                lines.append(last)
            }
            let sends = record(lines, stream, key: key, entry: &e, in: s)
            e.openStreams -= 1
            let finish = e.openStreams == 0 && e.exit != nil
            s.procs[key] = e
            return (sends, finish)
        }
        for (c, m) in sends { c.sendOrLog(m) }
        if let startedNow { started(key, start: start, procPID: startedNow) }
        if finishNow { finish(key, start: start) }
    }

    // MARK: - Exit

    private func exited(_ key: ProcKey, start: UInt64, _ status: ExitStatus) {
        let waitForStreams = state.withLock { s -> Bool in
            guard s.procs[key]?.start == start else { return false }
            s.procs[key]!.exit = status
            return s.procs[key]!.openStreams > 0
        }
        if waitForStreams {
            // The keeper kills whatever could hold the pipes open, so they close at once;
            // report after a short wait regardless.
            let t = loop.scheduleTimer(after: .milliseconds(500)) { [weak self] in self?.finish(key, start: start) }
            state.withLock { $0.procs[key]?.timers.append(t) }
        } else {
            finish(key, start: start)
        }
    }

    /// Reports the final state once the keeper has exited and the output is drained.
    private func finish(_ key: ProcKey, start: UInt64) {
        step(key, start: start) { e, now in
            guard let exit = e.exit else { return [] }
            e.exit = nil   // once
            guard e.wasStarted else {
                // The keeper ended before it started the proc.
                let why = e.tail.tail.last.map { ": \($0)" } ?? ""
                metrics.procsFailed.add()
                return e.lifecycle.spawnFailed(reason: "the keeper \(exit) before starting the proc\(why)")
            }
            switch exit {
            case .exited(let code): return e.lifecycle.exited(code: code, stderrTail: e.tail.tail, now: now)
            case .signaled(let signal): return e.lifecycle.signaled(signal, now: now)
            }
        }
    }

    // MARK: - Lifecycle steps

    /// Runs one lifecycle step under the lock (ignored when `start` is given and is not the
    /// current start), then performs its actions outside it.
    func step(_ key: ProcKey, start: UInt64? = nil, _ body: (inout ProcEntry, MonotonicInstant) -> [ProcLifecycle.Action]) {
        let now = configuration.clock.now()
        let work = state.withLock { s -> ([ProcLifecycle.Action], ProcEntry)? in
            guard var e = s.procs[key] else { return nil }
            if let start, e.start != start { return nil }
            let actions = body(&e, now)
            if e.lifecycle.state.isTerminal, e.finishedAt == nil {
                e.finishedAt = now
                for t in e.timers { t.cancel() }
                e.timers.removeAll()
            }
            s.procs[key] = e
            return (actions, e)
        }
        guard let (actions, entry) = work else { return }
        for action in actions {
            perform(action, key: key, entry: entry, now: now)
        }
    }

    private func perform(_ action: ProcLifecycle.Action, key: ProcKey, entry: ProcEntry, now: MonotonicInstant) {
        switch action {
        case .report(let procState):
            var status = entry.status(key)
            status.state = procState
            push(.procState(status), for: entry)
            logger.debug("proc state", metadata: ["mesh": "\(key.mesh)", "rank": "\(key.rank)", "state": "\(procState)"])
            if procState.isTerminal { finished(key, state: procState, entry: entry) }
        case .died(let how, let wasReady, let restarting):
            var status = entry.status(key)
            status.state = how
            status.stderrTail = entry.tail.tail
            status.restarts = entry.lifecycle.restarts - (restarting ? 1 : 0)
            push(.procDied(ProcDeath(status: status, wasReady: wasReady, restarting: restarting)), for: entry)
            metrics.procsFailed.add()
            logger.info("proc died", metadata: ["mesh": "\(key.mesh)", "rank": "\(key.rank)", "how": "\(how)",
                                                 "restarting": "\(restarting)"])
        case .restart:
            let token = Self.newToken()
            state.withLock { s in
                guard let old = s.procs[key]?.token else { return }
                s.tokens[old] = nil
                s.tokens[token] = key
                s.procs[key]!.token = token
                s.procs[key]!.wasStarted = false
            }
            metrics.procsRestarted.add()
            launch(key)
        case .signal(let sig):
            do {
                try entry.child?.kill(Keeper.keeperSignal(for: sig))
            } catch {
                logger.debug("signal not delivered", metadata: ["rank": "\(key.rank)", "signal": "\(sig)", "error": "\(error)"])
            }
        case .armTimer(let at):
            let t = loop.scheduleTimer(after: max(at - now, .zero)) { [weak self] in
                guard let self else { return }
                self.step(key) { e, now in e.lifecycle.poll(now: now) }
            }
            state.withLock { $0.procs[key]?.timers.append(t) }
        }
    }

    /// Sends a push about a proc to its owner session and its followers.
    private func push(_ message: HostMeshMessage, for entry: ProcEntry) {
        var targets = entry.followers
        if let n = entry.notify { targets.insert(n) }
        let channels = state.withLock { s in targets.compactMap { s.sessions[$0]?.channel } }
        for c in channels { c.sendOrLog(message) }
    }

    /// A proc reached a final state: count it, schedule forgetting it, wake waiters.
    private func finished(_ key: ProcKey, state final: ProcState, entry: ProcEntry) {
        metrics.procsStopped.add()
        updateLiveGauge()
        let serial = entry.serial
        let t = loop.scheduleTimer(after: configuration.limits.finishedRetention) { [weak self] in
            self?.prune(key, serial: serial)
        }
        state.withLock { s in
            if s.procs[key]?.serial == serial { s.procs[key]!.timers.append(t) } else { t.cancel() }
        }
        if key.owner == .cluster { answerDetachedStops(key.mesh) }
        resumeIdleWaitersIfDone()
    }

    /// Forgets a finished proc once its retention has passed (unless it was spawned again).
    private func prune(_ key: ProcKey, serial: UInt64) {
        state.withLock { s in
            guard let e = s.procs[key], e.serial == serial, e.lifecycle.state.isTerminal else { return }
            s.tokens[e.token] = nil
            s.procs[key] = nil
        }
    }

    func updateLiveGauge() {
        metrics.procsLive.set(state.withLock { s in s.live { _ in true } })
    }
}
