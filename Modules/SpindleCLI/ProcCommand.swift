import ArgumentParser
import Logging
import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// `spindle proc`: a well-behaved proc. It reads `SPINDLE_*`, connects back to its agent,
/// optionally writes the config it received, announces itself ready, and exits 0 on SIGTERM
/// or when its agent goes away.
struct ProcCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proc",
        abstract: "Run as a proc of a proc mesh (started by a host agent).")

    @Option(name: .long, help: "Write the config snapshot received from the agent to this file (key=value lines).")
    var configOut: String?

    @OptionGroup var common: CommonOptions

    func run() async throws {
        bootstrapLogging(try common.logLevelValue())
        let env: ProcEnvironment
        do { env = try ProcEnvironment.current() } catch { throw CLIError(description: error.description) }
        let keyFile = common.keyFile ?? env.keyFile
        let key = try keyFile.map(loadClusterKey)
        let loop = try EventLoop(name: "spindle-proc")
        let transport = makeTCPTransport(loop: loop, key: key)
        let (events, continuation) = AsyncStream<Int32>.makeStream()
        let watcher = try await SignalWatcher.watch(on: loop, signals: [SIGINT, SIGTERM]) { continuation.yield($0) }
        let proc: MeshProc
        do {
            // A generous bound: if the agent dies its keeper ends this proc anyway; the bound
            // only decides when a silent agent counts as gone.
            proc = try await MeshProc.connect(environment: env, transport: transport, livenessBound: .seconds(30))
        } catch {
            watcher.cancel()
            await transport.shutdown()
            await loop.shutdown()
            throw CLIError(description: error.description)
        }
        if let path = configOut {
            let text = proc.config.values.keys.sorted().map { "\($0)=\(proc.config.values[$0]!)\n" }.joined()
            try writeFile(path, text)
        }
        try proc.announceReady()
        Task {
            await proc.waitForAgent()
            continuation.yield(0)
        }
        var it = events.makeAsyncIterator()
        _ = await it.next()
        watcher.cancel()
        proc.close()
        await transport.shutdown()
        await loop.shutdown()
    }
}
