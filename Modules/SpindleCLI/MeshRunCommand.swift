import ArgumentParser
import Logging
import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `spindle mesh run REF [--per-host K] [--env K=V]… -- PROGRAM [ARGS…]`: like mpirun/srun.
struct MeshRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a program on every host of a mesh, stream its output, wait for it to end.",
        discussion: """
        Attaches to the mesh, starts --per-host procs on each host (rank = host rank × per-host \
        + i; each gets SPINDLE_RANK, SPINDLE_WORLD_SIZE, …), prints their output line by line \
        prefixed with the rank ("[3] text"; stderr lines "[3!] text", on stderr), and waits \
        until all have exited. SIGINT or SIGTERM stops every proc's process group first. \
        Exit status: 0 when every proc exited 0; otherwise the first non-zero exit code, or \
        128 + signal for a proc killed by a signal; 128 + signal when interrupted; 1 when a \
        proc could not start or an agent refused; 69 when a host is unreachable or lost; 75 \
        when procs did not start in time; 64 for a bad command line.
        """)

    @OptionGroup var target: MeshTarget
    @Option(name: .long, help: "The proc mesh's name.")
    var name: String = "run"
    @OptionGroup var proc: ProcCommandOptions

    func validate() throws {
        try target.validateTimeout()
        _ = try target.parsedRef()
    }

    func run() async throws {
        bootstrapLogging(try target.common.logLevelValue())
        let ref = try target.parsedRef()
        let command = try proc.bootstrap()
        let net = try CLINetwork(target.common, name: "spindle-mesh-run")
        let interrupt = Interrupt()
        let watcher = try await SignalWatcher.watch(on: net.loop, signals: [SIGINT, SIGTERM]) { interrupt.fire($0) }
        let status = await runMesh(ref, command: command, transport: net.transport, interrupt: interrupt)
        watcher.cancel()
        await net.shutdown()
        if status != 0 { throw ExitCode(status) }
    }

    private func runMesh(_ ref: HostMeshRef, command: BootstrapCommand, transport: any Transport,
                         interrupt: Interrupt) async -> Int32 {
        let mesh: HostMesh
        do {
            var configuration = cliMeshConfiguration(timeout: target.timeout, logLevel: (try? target.common.logLevelValue()) ?? .info)
            configuration.eventBufferSize = 1 << 20
            mesh = try await HostMesh.attach(name: ref.name, hosts: ref.hosts, config: ConfigSnapshot(),
                                             timeout: seconds(target.timeout), transport: transport,
                                             configuration: configuration)
        } catch {
            printError("spindle mesh run: \(error)")
            return MeshExit.unavailable
        }
        // Subscribed before the spawn, so no state change is missed.
        let events = mesh.events()
        if let sig = interrupt.fired {
            await mesh.shutdown()
            return 128 + sig
        }
        let procs: ProcMesh
        do {
            procs = try await mesh.spawnProcs(name: name, perHost: proc.perHost, options: SpawnOptions(readiness: .started)) { _ in
                command
            }
        } catch {
            printError("spindle mesh run: \(error)")
            await mesh.shutdown()
            switch error {
            case .hostFailed, .hostLost: return MeshExit.unavailable
            case .spawnTimedOut: return MeshExit.timedOut
            default: return MeshExit.failed
            }
        }
        let printer = Task {
            for await entry in procs.logs() {
                switch entry {
                case .line(let l) where l.stream == .stderr: printError(l.description)
                case .line(let l): printFlushed(l.description)
                case .dropped(let n): printError("spindle mesh run: \(n) output lines dropped (not read fast enough)")
                }
            }
        }
        // Wait for every rank to end (or an interrupt); remember the first failure.
        let outcome = await withTaskGroup(of: RunOutcome.self) { group in
            group.addTask {
                // Every final state arrives as an event, in order: the first failure is the
                // first failing final state. (Should the buffer overflow, `lastKnown` decides.)
                var firstFailure: Int32? = nil
                var ended = Set<Int>()
                let count = procs.count
                if count == 0 { return .finished(nil) }
                loop: for await event in events {
                    switch event {
                    case .stateChanged(let st) where st.mesh == procs.name && st.state.isTerminal:
                        ended.insert(st.rank)
                        if firstFailure == nil { firstFailure = Self.failureCode(st.state) }
                        if ended.count == count { break loop }
                    case .missed:
                        if procs.lastKnown.allSatisfy(\.state.isTerminal) {
                            for st in procs.lastKnown where firstFailure == nil { firstFailure = Self.failureCode(st.state) }
                            break loop
                        }
                    default:
                        break
                    }
                }
                return .finished(firstFailure)
            }
            group.addTask { .interrupted(await interrupt.wait()) }
            let first = await group.next() ?? .finished(nil)
            group.cancelAll()
            interrupt.fire(0)   // ends the interrupt waiter
            return first
        }
        events.cancel()
        do {
            try await procs.stop()   // no-op for ended ranks; SIGTERM to every group after an interrupt
        } catch {
            printError("spindle mesh run: \(error)")
        }
        await printer.value
        await mesh.shutdown()
        switch outcome {
        case .interrupted(let sig):
            return 128 + sig
        case .finished(let code):
            if procs.lastKnown.contains(where: { if case .hostLost = $0.state { true } else { false } }) {
                printError("spindle mesh run: a host was lost: \(procs.lastKnown.map(\.description).joined(separator: ", "))")
                return code ?? MeshExit.unavailable
            }
            return code ?? 0
        }
    }

    private enum RunOutcome: Sendable {
        case finished(Int32?)
        case interrupted(Int32)
    }

    /// The exit status a final state stands for, when it is a failure.
    static func failureCode(_ state: ProcState) -> Int32? {
        switch state {
        case .stopped(let code, _): return code == 0 ? nil : code
        case .killed(let signal): return 128 + signal
        case .failed: return MeshExit.failed
        case .hostLost: return MeshExit.unavailable
        default: return nil
        }
    }
}

/// A signal (or the end of the run) that one waiter learns of.
final class Interrupt: Sendable {
    private struct State {
        var signal: Int32?
        var waiter: CheckedContinuation<Int32, Never>?
    }
    private let state = Mutex(State())

    /// The signal, once one came.
    var fired: Int32? { state.withLock { $0.signal } }

    func fire(_ signal: Int32) {
        let w = state.withLock { s -> CheckedContinuation<Int32, Never>? in
            if s.signal == nil { s.signal = signal }
            defer { s.waiter = nil }
            return s.waiter
        }
        w?.resume(returning: signal)
    }

    func wait() async -> Int32 {
        await withCheckedContinuation { c in
            let now = state.withLock { s -> Int32? in
                if let sig = s.signal { return sig }
                s.waiter = c
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }
}
