import Foundation
import SpindleTaskQueue

#if canImport(Glibc)
import Glibc
#endif

/// The worker side of the process backend: the same executable, re-entered in worker mode.
///
/// Put this first in your program's `main.swift`, naming every kind the program runs on
/// process workers:
///
/// ```swift
/// ProcessWorkerMain.runIfWorker(kinds: [Thumbnails.self, Checksums.self])
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
    public static func runIfWorker(kinds: [any TaskKind.Type]) {
        guard let raw = getenv(environmentKey) else { return }
        let name = String(cString: raw)
        signal(SIGPIPE, SIG_IGN)
        let protocolFD = dup(1)
        dup2(2, 1)
        guard let kind = kinds.first(where: { $0.name == name }) else {
            var out: [UInt8] = []
            WorkerWire.append(.refuse, body: Array("this executable has no task kind named \"\(name)\"; it knows \(kinds.map { $0.name })".utf8), to: &out)
            writeAll(protocolFD, out)
            exit(ExitCode.unknownKind.rawValue)
        }
        exit(kind.serveAsProcessWorker(output: protocolFD).rawValue)
    }
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
/// buffer is handled before the collected answers are written in one `write`.
private final class WorkerLoop<Kind: TaskKind>: @unchecked Sendable {
    // @unchecked Sendable: used only on the worker's main thread; the context's emitter is
    // called from `perform`, which runs on that same thread.
    private let output: Int32
    private var reader = WireReader(maxFrameSize: 64 << 20)
    private var out: [UInt8] = []
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()
    private var currentSeq: UInt64 = 0

    init(output: Int32) {
        self.output = output
    }

    func run() -> ProcessWorkerMain.ExitCode {
        var handshaken = false
        let context = PerformContext<Kind.Feedback>(cancelFlag: CancellationFlag()) { [self] feedback in
            emit(feedback)
        }
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            awaitInputBriefly()
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n == 0 { return .served }  // master closed our stdin
            if n < 0 {
                if errno == EINTR { continue }
                return .protocolError
            }
            chunk.withUnsafeBytes { reader.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            while true {
                let frame: WireFrame?
                do { frame = try reader.next() } catch {
                    flush()
                    writeAll(2, Array("spindle worker: malformed input from master: \(error)\n".utf8))
                    return .protocolError
                }
                guard let frame else { break }
                if !handshaken {
                    guard frame.type == WorkerWire.FrameType.hello.rawValue,
                          let hello = try? decoder.decode(WorkerWire.Hello.self, from: Data(frame.body)),
                          hello.version == WorkerWire.version, hello.kind == Kind.name else {
                        WorkerWire.append(.refuse, body: Array("expected hello for kind \(Kind.name), protocol \(WorkerWire.version)".utf8), to: &out)
                        flush()
                        return .badHandshake
                    }
                    let accept = WorkerWire.Accept(version: WorkerWire.version, kind: Kind.name, pid: getpid())
                    WorkerWire.append(.accept, body: (try? encoder.encode(accept)) ?? Data(), to: &out)
                    handshaken = true
                    continue
                }
                switch WorkerWire.FrameType(rawValue: frame.type) {
                case .request:
                    guard let (seq, body) = frame.splitSeq() else { return .protocolError }
                    handle(seq: seq, body: body, context: context)
                case .broadcast:
                    if let feedback = try? decoder.decode(Kind.Feedback.self, from: Data(frame.body)) {
                        Kind.received(broadcast: feedback)
                    }
                case .exit:
                    flush()
                    return .served
                default:
                    flush()
                    writeAll(2, Array("spindle worker: unexpected frame type \(frame.type)\n".utf8))
                    return .protocolError
                }
            }
            flush()
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
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let until = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec) + 200_000
        while true {
            if poll(&fds, 1, 0) != 0 { return }
            clock_gettime(CLOCK_MONOTONIC, &ts)
            if Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec) >= until { return }
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
        let response = Kind.perform(request, context: context)
        do {
            let bytes = try encoder.encode(response)
            WorkerWire.append(.response, seq: seq, body: bytes, to: &out)
        } catch {
            failure(seq: seq, .encodeResponse, "\(error)")
        }
    }

    private func failure(seq: UInt64, _ direction: MarshalError.Direction, _ detail: String) {
        let code = UInt8(WorkerWire.directionCodes.firstIndex(of: direction) ?? 0)
        WorkerWire.append(.marshalFailure, seq: seq, body: [code] + Array(detail.utf8), to: &out)
    }

    /// Feedback goes out at once (streamed), after anything already collected.
    private func emit(_ feedback: Kind.Feedback) {
        do {
            WorkerWire.append(.feedback, seq: currentSeq, body: try encoder.encode(feedback), to: &out)
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
