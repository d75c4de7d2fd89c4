import Foundation
import SpindleKernel
import SpindleSupport
import Logging
import SpindleEventLoop
import SpindleTaskQueue
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The master's side of one worker process: its pipes, handshake, in-flight tasks and death.
final class ProcessWorker<Kind: TaskKind>: Sendable {
    enum Phase { case spawning, handshaking, ready, leaving, gone }

    private struct State {
        var phase: Phase = .spawning
        var child: ChildProcess?
        /// What was asked of the worker before it was ready.
        var pendingFrames: [[UInt8]] = []
        /// Tasks sent and not answered, by seq (for feedback routing and failure reports).
        var inFlight: [UInt64: Kind.Task] = [:]
        /// Tasks taken back (cancelled while prefetched): an answer that crossed the withdrawal
        /// is dropped rather than treated as a protocol error.
        var withdrawn: Set<UInt64> = []
        /// Set when the master ended the worker (kill or retire): its death is not reported.
        var endedByMaster = false
        var reported = false
        var handshakeTimer: LoopTimer?
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
        var exited = false
    }

    let id: WorkerID
    private let events: WorkerEvents<Kind>
    private let state = Mutex(State())
    /// Touched only on the loop thread (stdout's read callback).
    private let reader: LoopConfined<WireReader>
    /// Loop thread only, like `reader`.
    private let decoder = LoopConfined(JSONDecoder())
    private let logger: Logger
    /// The largest frame either side may send (the worker learns it from the hello).
    private let maxFrameSize: Int

    init(id: WorkerID, events: WorkerEvents<Kind>, maxFrameSize: Int, logger: Logger) {
        self.id = id
        self.events = events
        self.logger = logger
        self.maxFrameSize = maxFrameSize
        reader = LoopConfined(WireReader(maxFrameSize: maxFrameSize))
    }

    var pid: Int32? { state.withLock { $0.exited ? nil : $0.child?.pid } }

    // MARK: Life cycle

    func spawnFailed(_ detail: String) {
        let report = state.withLock { s -> Bool in
            let report = !s.endedByMaster && !s.reported
            s.reported = true
            s.phase = .gone
            s.exited = true
            return report
        }
        let waiters = takeExitWaiters()
        for w in waiters { w.resume() }
        if report { events.died(id, detail: "could not spawn: \(detail)") }
    }

    func spawned(_ child: ChildProcess, loop: EventLoop, handshakeTimeout: Duration,
                 onGone: @escaping @Sendable () -> Void) {
        let killNow = state.withLock { s -> Bool in
            s.child = child
            if s.endedByMaster { return true }
            s.phase = .handshaking
            return false
        }
        child.onExit { [self] status in
            exited(status)
            onGone()
        }
        if killNow {
            try? child.kill(SIGKILL)
            return
        }
        reader.bind(to: loop)
        decoder.bind(to: loop)
        child.stdout?.start(onRead: { [self] bytes in
            received(bytes)
        }, onClose: { [self] error in
            // A worker closing its stdout is as good as dead: make sure it is, and report
            // when its exit status is known.
            let alive = state.withLock { !$0.exited }
            if alive { try? child.kill(SIGKILL) }
            if let error { logger.debug("worker stdout closed", metadata: ["worker": "\(id)", "error": "\(error)"]) }
        })
        let hello = WorkerWire.Hello(version: WorkerWire.version, kind: Kind.name, maxFrameSize: maxFrameSize)
        child.stdin?.write(WorkerWire.frame(.hello, body: (try? JSONEncoder().encode(hello)) ?? Data()))
        let timer = loop.scheduleTimer(after: handshakeTimeout) { [self] in
            let late = state.withLock { $0.phase == .handshaking }
            if late {
                logger.warning("worker handshake timed out", metadata: ["worker": "\(id)"])
                failed("did not accept the handshake within \(handshakeTimeout)")
            }
        }
        state.withLock { $0.handshakeTimer = timer }
    }

    /// Kills (or, gracefully, asks to exit) a worker the master is done with.
    func terminate(graceful: Bool) {
        let child = state.withLock { s -> ChildProcess? in
            s.endedByMaster = true
            s.phase = .leaving
            s.pendingFrames = []
            return s.child
        }
        guard let child else { return }  // still spawning: killed once spawned
        if graceful, let stdin = child.stdin {
            stdin.write(WorkerWire.frame(.exit, body: EmptyCollection()))
            stdin.close()
        } else {
            try? child.kill(SIGKILL)
        }
    }

    /// Waits until the process is reaped; kills it at `deadline`.
    func waitForExit(until deadline: MonotonicInstant) async {
        let child = state.withLock { $0.child }
        let timeout = deadline - SystemClock().now()
        if let child, timeout > .zero {
            let killer = child.loop.scheduleTimer(after: timeout) { try? child.kill(SIGKILL) }
            await waitExited()
            killer.cancel()
        } else {
            if let child { try? child.kill(SIGKILL) }
            await waitExited()
        }
    }

    private func waitExited() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.exited || (s.child == nil && s.phase == .gone) { return true }
                s.exitWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    private func takeExitWaiters() -> [CheckedContinuation<Void, Never>] {
        state.withLock { s in
            let w = s.exitWaiters
            s.exitWaiters = []
            return w
        }
    }

    private func exited(_ status: ExitStatus) {
        let (report, timer) = state.withLock { s -> (Bool, LoopTimer?) in
            s.exited = true
            s.phase = .gone
            let report = !s.endedByMaster && !s.reported
            s.reported = true
            return (report, s.handshakeTimer)
        }
        timer?.cancel()
        child()?.stdin?.close()
        child()?.stdout?.close()
        for w in takeExitWaiters() { w.resume() }
        if report { events.died(id, detail: "worker process \(status)") }
    }

    private func child() -> ChildProcess? { state.withLock { $0.child } }

    /// The worker misbehaved: kill it; its death is reported with this detail.
    private func failed(_ detail: String) {
        let (child, report) = state.withLock { s -> (ChildProcess?, Bool) in
            let report = !s.endedByMaster && !s.reported
            s.reported = true
            return (s.child, report)
        }
        try? child?.kill(SIGKILL)
        if report { events.died(id, detail: detail) }
    }

    // MARK: Sending

    func send(_ batch: [Assignment<Kind>]) {
        var out: [UInt8] = []
        out.reserveCapacity(batch.count * 48)
        let encoder = JSONEncoder()
        var failures: [Completion<Kind>] = []
        var sent: [(UInt64, Kind.Task)] = []
        sent.reserveCapacity(batch.count)
        for a in batch {
            do {
                let body = try encoder.encode(a.request)
                guard body.count + WorkerWire.seqFrameOverhead - WorkerWire.headerSize <= maxFrameSize else {
                    failures.append(Completion(seq: a.seq, outcome: .marshalFailed(MarshalError(
                        direction: .encodeRequest, kind: Kind.name, worker: id,
                        detail: "the request of \(body.count) bytes does not fit the frame limit of \(maxFrameSize) bytes"))))
                    continue
                }
                WorkerWire.append(.request, seq: a.seq, body: body, to: &out)
                sent.append((a.seq, a.task))
            } catch {
                failures.append(Completion(seq: a.seq, outcome: .marshalFailed(MarshalError(
                    direction: .encodeRequest, kind: Kind.name, worker: id, detail: "\(error)"))))
            }
        }
        let child = state.withLock { s -> ChildProcess? in
            for (seq, task) in sent { s.inFlight[seq] = task }
            if s.phase == .handshaking || s.phase == .spawning {
                if !out.isEmpty { s.pendingFrames.append(out) }
                return nil
            }
            return s.phase == .ready ? s.child : nil
        }
        if let child, !out.isEmpty { child.stdin?.write(out) }
        if !failures.isEmpty {
            // Never report from inside a backend call: hand it to the loop.
            let events = self.events, id = self.id, toReport = failures
            let loop = state.withLock { $0.child?.loop }
            if let loop {
                loop.execute { events.completed(id, toReport) }
            } else {
                Task { events.completed(id, toReport) }
            }
        }
    }

    /// Takes back requests the worker has not started; answers that crossed are dropped.
    func withdraw(_ seqs: [UInt64]) {
        var out: [UInt8] = []
        let child = state.withLock { s -> ChildProcess? in
            for seq in seqs where s.inFlight.removeValue(forKey: seq) != nil {
                s.withdrawn.insert(seq)
                WorkerWire.append(.withdraw, seq: seq, body: EmptyCollection(), to: &out)
            }
            if out.isEmpty { return nil }
            if s.phase == .handshaking || s.phase == .spawning {
                s.pendingFrames.append(out)
                return nil
            }
            return s.phase == .ready ? s.child : nil
        }
        if let child, !out.isEmpty { child.stdin?.write(out) }
    }

    /// Whether `seq` is a task this worker was given: in flight, or withdrawn (then forgotten
    /// when `answer` is set, since a withdrawn task answers at most once).
    private func owns(_ seq: UInt64, answer: Bool) -> (Kind.Task?, withdrawn: Bool) {
        state.withLock { s in
            if answer, let task = s.inFlight.removeValue(forKey: seq) { return (task, false) }
            if !answer, let task = s.inFlight[seq] { return (task, false) }
            if s.withdrawn.contains(seq) {
                if answer { s.withdrawn.remove(seq) }
                return (nil, true)
            }
            return (nil, false)
        }
    }

    func sendRaw(_ frame: [UInt8]) {
        let child = state.withLock { s -> ChildProcess? in
            if s.phase == .handshaking || s.phase == .spawning {
                s.pendingFrames.append(frame)
                return nil
            }
            return s.phase == .ready ? s.child : nil
        }
        child?.stdin?.write(frame)
    }

    // MARK: Receiving (loop thread)

    private func received(_ bytes: UnsafeRawBufferPointer) {
        var completions: [Completion<Kind>] = []
        var problem: String?
        reader.withValue { reader in
            reader.feed(bytes)
            while problem == nil {
                let frame: WireFrame?
                do { frame = try reader.next() } catch {
                    problem = "sent malformed bytes: \(error)"
                    break
                }
                guard let frame else { break }
                problem = handle(frame, into: &completions)
            }
        }
        if !completions.isEmpty { events.completed(id, completions) }
        if let problem { failed(problem) }
    }

    /// Handles one frame; returns a problem that makes the worker unusable.
    private func handle(_ frame: WireFrame, into completions: inout [Completion<Kind>]) -> String? {
        switch WorkerWire.FrameType(rawValue: frame.type) {
        case .accept:
            guard let accept = try? JSONDecoder().decode(WorkerWire.Accept.self, from: Data(frame.body)),
                  accept.version == WorkerWire.version, accept.kind == Kind.name else {
                return "answered the handshake with an unusable accept frame"
            }
            let (child, pending, timer, first) = state.withLock { s -> (ChildProcess?, [[UInt8]], LoopTimer?, Bool) in
                guard s.phase == .handshaking else { return (nil, [], nil, false) }
                s.phase = .ready
                let p = s.pendingFrames
                s.pendingFrames = []
                return (s.child, p, s.handshakeTimer, true)
            }
            timer?.cancel()
            if first {
                if !pending.isEmpty { child?.stdin?.write(contentsOf: pending) }
                events.ready(id)
            }
            return nil
        case .refuse:
            return "refused the handshake: \(String(decoding: frame.body, as: UTF8.self))"
        case .response:
            guard let (seq, body) = frame.splitSeq() else { return "sent a response frame without a task number" }
            let (task, withdrawn) = owns(seq, answer: true)
            if withdrawn { return nil }
            guard task != nil else { return "answered task \(seq), which it was not given" }
            do {
                let response = try decoder.withValue { try $0.decode(Kind.Response.self, from: Data(body)) }
                completions.append(Completion(seq: seq, outcome: .response(response)))
            } catch {
                completions.append(Completion(seq: seq, outcome: .marshalFailed(MarshalError(
                    direction: .decodeResponse, kind: Kind.name, worker: id, detail: "\(error)"))))
            }
            return nil
        case .marshalFailure:
            guard let (seq, body) = frame.splitSeq(), let code = body.first else {
                return "sent a malformed marshal-failure frame"
            }
            let (task, withdrawn) = owns(seq, answer: true)
            if withdrawn { return nil }
            guard task != nil else { return "reported a marshal failure for task \(seq), which it was not given" }
            let direction = Int(code) < WorkerWire.directionCodes.count ? WorkerWire.directionCodes[Int(code)] : .encodeResponse
            completions.append(Completion(seq: seq, outcome: .marshalFailed(MarshalError(
                direction: direction, kind: Kind.name, worker: id,
                detail: String(decoding: body.dropFirst(), as: UTF8.self)))))
            return nil
        case .feedback, .feedbackMarshalFailure:
            guard let (seq, body) = frame.splitSeq() else { return "sent a feedback frame without a task number" }
            let (owned, withdrawn) = owns(seq, answer: false)
            if withdrawn { return nil }
            guard let task = owned else { return "sent feedback for task \(seq), which it is not running" }
            // Completions gathered so far go first, so feedback never overtakes an answer.
            if !completions.isEmpty {
                events.completed(id, completions)
                completions = []
            }
            if frame.type == WorkerWire.FrameType.feedback.rawValue {
                do {
                    events.feedback(id, task: task, try decoder.withValue { try $0.decode(Kind.Feedback.self, from: Data(body)) })
                } catch {
                    events.feedbackFailed(task: task, MarshalError(direction: .decodeFeedback, kind: Kind.name,
                                                                   worker: id, detail: "\(error)"))
                }
            } else {
                events.feedbackFailed(task: task, MarshalError(direction: .encodeFeedback, kind: Kind.name,
                                                               worker: id, detail: String(decoding: body, as: UTF8.self)))
            }
            return nil
        case .error:
            guard let (seq, rest) = frame.splitSeq(), let flags = rest.first else {
                return "sent a malformed error frame"
            }
            let (task, withdrawn) = owns(seq, answer: true)
            if withdrawn { return nil }
            guard task != nil else { return "reported an error for task \(seq), which it was not given" }
            completions.append(Completion(seq: seq, outcome: decodeError(rest.dropFirst(), retryable: flags & 1 != 0)))
            return nil
        case .broadcastFailure:
            events.broadcastFailed(id, MarshalError(direction: .decodeBroadcast, kind: Kind.name, worker: id,
                                                    detail: String(decoding: frame.body, as: UTF8.self)))
            return nil
        default:
            return "sent an unknown frame type \(frame.type)"
        }
    }
}

extension ProcessWorker {
    /// Rebuilds an error `perform` threw in the worker: as itself when the kind lists its type
    /// in `errorTypes`, else as a `RemoteTaskError`.
    func decodeError(_ body: ArraySlice<UInt8>, retryable: Bool) -> Completion<Kind>.Outcome {
        let envelope: WorkerWire.ErrorEnvelope
        do {
            envelope = try JSONDecoder().decode(WorkerWire.ErrorEnvelope.self, from: Data(body))
        } catch {
            return .marshalFailed(MarshalError(direction: .decodeError, kind: Kind.name, worker: id, detail: "\(error)"))
        }
        if let payload = envelope.payload,
           let type = Kind.errorTypes.first(where: { String(reflecting: $0) == envelope.type }) {
            do {
                return .failed(try decodeTypedError(type, Data(payload.utf8)), retryable: retryable)
            } catch {
                return .marshalFailed(MarshalError(direction: .decodeError, kind: Kind.name, worker: id,
                                                   detail: "\(envelope.type): \(error)"))
            }
        }
        return .failed(RemoteTaskError(typeName: envelope.type, detail: envelope.detail), retryable: retryable)
    }
}

private func decodeTypedError<E: Error & Codable>(_ type: E.Type, _ data: Data) throws -> any Error {
    try JSONDecoder().decode(E.self, from: data)
}
