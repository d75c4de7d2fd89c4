import Foundation
import SpindleKernel
import SpindleSupport
import SpindleTaskQueue

#if canImport(Glibc)
import Glibc
#endif

/// The worker side of the process backend: the same executable, re-entered in worker mode.
///
/// Put this first in your program's `main.swift`, naming every kind and job the program runs
/// on process workers:
///
/// ```swift
/// ProcessWorkerMain.runIfWorker(kinds: [Thumbnails.self], jobs: [Square.self])
/// // … the normal program (the master) continues here
/// ```
///
/// When the environment variable ``environmentKey`` is set (the backend sets it to the
/// kind's name), this never returns: it handshakes with the master over stdin/stdout, serves
/// requests until told to exit or until stdin closes, and exits the process. Otherwise it
/// returns at once. In worker mode the original stdout is kept for frames and file
/// descriptor 1 is pointed at stderr, so a stray `print` in `perform` cannot corrupt the
/// protocol.
public enum ProcessWorkerMain {
    /// Set in a worker's environment to the name of the kind it serves.
    public static let environmentKey = "SPINDLE_TASKQUEUE_WORKER"

    /// Exit codes of a worker process that could not serve.
    public enum ExitCode: Int32 {
        case served = 0
        case unknownKind = 70
        case badHandshake = 71
        case protocolError = 72
    }

    /// Serves as a worker and exits if this process was started as one; returns otherwise.
    /// - Parameters:
    ///   - kinds: the `TaskKind`s this program runs on process workers.
    ///   - jobs: the `ProcessJob`s it runs on process workers.
    public static func runIfWorker(kinds: [any TaskKind.Type] = [], jobs: [any ProcessJob.Type] = []) {
        guard let raw = getenv(environmentKey) else { return }
        let name = String(cString: raw)
        signal(SIGPIPE, SIG_IGN)
        // Close-on-exec: a job that starts a program of its own must not hand it the master's
        // pipe (the master would not see the pipe close when this worker dies).
        let protocolFD = fcntl(1, F_DUPFD_CLOEXEC, 0)
        dup2(2, 1)
        let all = kinds + jobs.map { kindType(of: $0) }
        guard let kind = all.first(where: { $0.name == name }) else {
            var out: [UInt8] = []
            WorkerWire.append(.refuse, body: Array("this executable has no task kind or job named \"\(name)\"; it knows \(all.map { $0.name })".utf8), to: &out)
            writeAll(protocolFD, out)
            exit(ExitCode.unknownKind.rawValue)
        }
        exit(kind.serveAsProcessWorker(output: protocolFD).rawValue)
    }

    /// Serves as a worker of these jobs and exits if this process was started as one.
    public static func runIfWorker(jobs: [any ProcessJob.Type]) {
        runIfWorker(kinds: [], jobs: jobs)
    }

    private static func kindType<Job: ProcessJob>(of job: Job.Type) -> any TaskKind.Type { JobKind<Job>.self }
}

extension TaskKind {
    /// Serves this kind on stdin and `output` until told to stop.
    fileprivate static func serveAsProcessWorker(output: Int32) -> ProcessWorkerMain.ExitCode {
        WorkerLoop<Self>(output: output).run()
    }
}

/// Reads frames from stdin, performs requests, writes answers to the protocol descriptor.
///
/// Requests that arrive together are answered together: every complete frame in the input
/// is handled before the collected answers are written in one `write`. Before each request
/// the loop takes in whatever else the master sent meanwhile, so a withdrawal (`W`) of a
/// request still waiting here removes it before it starts.
private final class WorkerLoop<Kind: TaskKind>: @unchecked Sendable {
    // @unchecked Sendable: used only on the worker's main thread; the context's emitter is
    // called from `perform`, which runs on that thread (or, for an async perform, in a task the
    // main thread waits for, so never at the same time as the loop).
    private let output: Int32
    /// Until the hello names the master's limit, accept a hello-sized frame only.
    private var reader = WireReader(maxFrameSize: 64 << 10)
    private var frameLimit = 16 << 20
    private var out: [UInt8] = []
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()
    private var currentSeq: UInt64 = 0
    /// Complete frames read and not handled yet (`W` frames are applied as they are read).
    private var pending: [WireFrame] = []
    private var head = 0
    private var endOfInput = false
    private var malformed: WireError?
    private var chunk = [UInt8](repeating: 0, count: 64 << 10)
    /// When stdin was last read (monotonic ns): a request started within `freshInput` of a read
    /// skips the check for a withdrawal (one would have had no time to arrive).
    private var lastRead: UInt64 = 0

    init(output: Int32) {
        self.output = output
    }

    func run() -> ProcessWorkerMain.ExitCode {
        var handshaken = false
        let context = PerformContext<Kind.Feedback>(cancelFlag: CancellationFlag()) { [self] feedback in
            emit(feedback)
        }
        while true {
            if head == pending.count {
                pending.removeAll(keepingCapacity: true)
                head = 0
                flush()
                if let malformed { return protocolError("malformed input from master: \(malformed)") }
                if endOfInput { return .served }  // master closed our stdin
                awaitInputBriefly()
                if !readInput(blocking: true) { return .protocolError }
                continue
            }
            let frame = pending[head]
            head += 1
            if !handshaken {
                guard frame.type == WorkerWire.FrameType.hello.rawValue,
                      let hello = try? decoder.decode(WorkerWire.Hello.self, from: Data(frame.body)),
                      hello.version == WorkerWire.version, hello.kind == Kind.name else {
                    WorkerWire.append(.refuse, body: Array("expected hello for kind \(Kind.name), protocol \(WorkerWire.version)".utf8), to: &out)
                    flush()
                    return .badHandshake
                }
                frameLimit = max(4096, hello.maxFrameSize)
                reader.maxFrameSize = frameLimit
                let accept = WorkerWire.Accept(version: WorkerWire.version, kind: Kind.name, pid: getpid())
                WorkerWire.append(.accept, body: (try? encoder.encode(accept)) ?? Data(), to: &out)
                handshaken = true
                continue
            }
            switch WorkerWire.FrameType(rawValue: frame.type) {
            case .request:
                guard let (seq, body) = frame.splitSeq() else { return protocolError("request frame without a task number") }
                // Take in what arrived meanwhile: a withdrawal of this request removes it.
                if monotonicNanoseconds() &- lastRead > freshInputNanoseconds, !readInput(blocking: false) {
                    return .protocolError
                }
                guard head > 0, pending[head - 1].isRequest(seq) else { continue }
                handle(seq: seq, body: body, context: context)
            case .broadcast:
                do {
                    Kind.received(broadcast: try decoder.decode(Kind.Feedback.self, from: Data(frame.body)))
                } catch {
                    WorkerWire.append(.broadcastFailure, body: Array("\(error)".utf8), to: &out)
                }
            case .exit:
                flush()
                return .served
            default:
                return protocolError("unexpected frame type \(frame.type)")
            }
        }
    }

    private func protocolError(_ text: String) -> ProcessWorkerMain.ExitCode {
        flush()
        writeAll(2, Array("spindle worker: \(text)\n".utf8))
        return .protocolError
    }

    /// Reads what stdin has — waiting for it when `blocking`, else only if poll says there is
    /// some — and queues its complete frames. Returns false on a read error.
    private func readInput(blocking: Bool) -> Bool {
        if endOfInput || malformed != nil { return true }
        defer { lastRead = monotonicNanoseconds() }
        if !blocking {
            var fds = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            if poll(&fds, 1, 0) <= 0 { return true }
        }
        var n: Int
        repeat {
            n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        } while n < 0 && errno == EINTR
        if n < 0 { return false }
        if n == 0 {
            endOfInput = true
            return true
        }
        chunk.withUnsafeBytes { reader.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        while true {
            let frame: WireFrame?
            do { frame = try reader.next() } catch {
                malformed = error
                return true
            }
            guard let frame else { return true }
            if frame.type == WorkerWire.FrameType.withdraw.rawValue {
                applyWithdrawal(frame.body)
            } else {
                pending.append(frame)
            }
        }
    }

    /// Removes the withdrawn requests still waiting here; those already answered or running
    /// are answered as usual (the master drops the answer).
    private func applyWithdrawal(_ body: ArraySlice<UInt8>) {
        var rest = body
        while rest.count >= 8 {
            var seq: UInt64 = 0
            for (i, b) in rest.prefix(8).enumerated() { seq |= UInt64(b) << (8 * UInt64(i)) }
            rest = rest.dropFirst(8)
            // The request being started is `pending[head - 1]`; only later ones can be removed,
            // plus that one if `run` has not begun it (it checks again after this read).
            if let k = pending[max(0, head - 1)...].firstIndex(where: { $0.isRequest(seq) }) {
                if k == head - 1 {
                    pending[k] = WireFrame(type: 0, body: [])  // skipped by `run`
                } else {
                    pending.remove(at: k)
                }
            }
        }
    }

    /// Polls stdin without sleeping for up to 200 µs before the blocking `read`.
    ///
    /// Waking a sleeping process costs tens of microseconds on a small VM
    /// (MACHINE-NOTES.md), and the master's next request usually follows an answer within
    /// that; a short spin saves the wake-up on request/response chains and costs at most
    /// 200 µs of CPU each time the worker falls idle.
    private func awaitInputBriefly() {
        var fds = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        let clock = SystemClock()
        let until = clock.now() + .microseconds(200)
        while true {
            if poll(&fds, 1, 0) != 0 { return }
            if clock.now() >= until { return }
        }
    }

    private func handle(seq: UInt64, body: ArraySlice<UInt8>, context: PerformContext<Kind.Feedback>) {
        let request: Kind.Request
        do {
            request = try decoder.decode(Kind.Request.self, from: Data(body))
        } catch {
            failure(seq: seq, .decodeRequest, "\(error)")
            return
        }
        currentSeq = seq
        let outcome: Result<Kind.Response, any Error>
        do {
            outcome = .success(try Kind.perform(request, context: context))
        } catch is AsyncPerformRequired {
            outcome = performAsynchronously(request, context: context)
        } catch {
            outcome = .failure(error)
        }
        switch outcome {
        case .success(let response):
            let bytes: Data
            do {
                bytes = try encoder.encode(response)
            } catch {
                failure(seq: seq, .encodeResponse, "\(error)")
                return
            }
            guard fits(bytes.count) else {
                failure(seq: seq, .encodeResponse,
                        "the response of \(bytes.count) bytes does not fit the frame limit of \(frameLimit) bytes")
                return
            }
            WorkerWire.append(.response, seq: seq, body: bytes, to: &out)
        case .failure(let error):
            thrown(seq: seq, error)
        }
    }

    /// Runs the kind's `async` perform as a task while this thread waits for it.
    private func performAsynchronously(_ request: Kind.Request, context: PerformContext<Kind.Feedback>)
        -> Result<Kind.Response, any Error> {
        let result = BlockingResult<Result<Kind.Response, any Error>>()
        Task {
            do {
                result.finish(.success(try await Kind.perform(request, context: context)))
            } catch {
                result.finish(.failure(error))
            }
        }
        return result.wait()
    }

    /// Whether a body of `count` bytes after a task number fits one frame.
    private func fits(_ count: Int) -> Bool {
        count + WorkerWire.seqFrameOverhead - WorkerWire.headerSize <= frameLimit
    }

    /// Sends an error `perform` threw: its type name, its JSON when it is `Encodable`, its
    /// description, and whether it asked for a retry.
    private func thrown(seq: UInt64, _ error: any Error) {
        var envelope = WorkerWire.ErrorEnvelope(type: String(reflecting: type(of: error)), payload: nil,
                                                detail: String(describing: error))
        if let encodable = error as? any Encodable, let json = try? encoder.encode(encodable) {
            envelope.payload = String(decoding: json, as: UTF8.self)
        }
        var bytes = (try? encoder.encode(envelope)) ?? Data()
        if !fits(bytes.count + 1) {
            envelope.payload = nil
            envelope.detail = String(envelope.detail.prefix(1024))
            bytes = (try? encoder.encode(envelope)) ?? Data()
        }
        guard !bytes.isEmpty, fits(bytes.count + 1) else {
            failure(seq: seq, .encodeError, "\(envelope.type) could not be sent to the master")
            return
        }
        let flags: UInt8 = isRetryable(error) ? 1 : 0
        WorkerWire.append(.error, seq: seq, body: [flags] + bytes, to: &out)
    }

    private func failure(seq: UInt64, _ direction: MarshalError.Direction, _ detail: String) {
        let code = UInt8(WorkerWire.directionCodes.firstIndex(of: direction) ?? 0)
        WorkerWire.append(.marshalFailure, seq: seq, body: [code] + Array(detail.utf8.prefix(4096)), to: &out)
    }

    /// Feedback goes out at once (streamed), after anything already collected.
    private func emit(_ feedback: Kind.Feedback) {
        do {
            let bytes = try encoder.encode(feedback)
            if fits(bytes.count) {
                WorkerWire.append(.feedback, seq: currentSeq, body: bytes, to: &out)
            } else {
                WorkerWire.append(.feedbackMarshalFailure, seq: currentSeq,
                                  body: Array("feedback of \(bytes.count) bytes does not fit the frame limit of \(frameLimit) bytes".utf8),
                                  to: &out)
            }
        } catch {
            WorkerWire.append(.feedbackMarshalFailure, seq: currentSeq, body: Array("\(error)".utf8), to: &out)
        }
        flush()
    }

    private func flush() {
        guard !out.isEmpty else { return }
        writeAll(output, out)
        out.removeAll(keepingCapacity: true)
    }
}

/// How recent a read makes a withdrawal check before a request unnecessary (see `lastRead`).
private let freshInputNanoseconds: UInt64 = 100_000

/// The system clock's monotonic time in nanoseconds.
private func monotonicNanoseconds() -> UInt64 {
    SystemClock().now().nanoseconds
}

extension WireFrame {
    /// Whether this is the request frame of task `seq`.
    func isRequest(_ seq: UInt64) -> Bool {
        guard type == WorkerWire.FrameType.request.rawValue, let (s, _) = splitSeq() else { return false }
        return s == seq
    }
}

/// Writes every byte, retrying short writes; gives up silently when the master is gone
/// (the worker then ends at its next read).
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
        }
    }
}
