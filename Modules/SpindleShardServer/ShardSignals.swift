// SIGTERM/SIGINT handling and the exit status of spindle-shard, kept apart from the argument
// parsing in main.swift: a stop from a host agent (SIGTERM to the proc's group) or Ctrl-C
// shuts the shard down and exits 0; every non-zero exit says why on stderr.
import SpindleEventLoop
import SpindleRunner
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGTERM and SIGINT into an orderly shutdown of the shard host.
final class ShardShutdown: Sendable {
    private struct State {
        var signal: Int32?
        var host: ShardHost?
    }
    private let state = Mutex(State())
    private let loop: EventLoop
    private let watcher: SignalWatcher

    private init(loop: EventLoop, watcher: SignalWatcher) {
        self.loop = loop
        self.watcher = watcher
    }

    /// Starts watching SIGTERM and SIGINT (on a small event loop of its own, so a signal is
    /// handled whatever the other threads are doing).
    static func install() async -> ShardShutdown {
        do {
            let loop = try EventLoop(name: "spindle-shard-signals")
            let box = Mutex<ShardShutdown?>(nil)
            let watcher = try await SignalWatcher.watch(on: loop, signals: [SIGTERM, SIGINT]) { sig in
                box.withLock { $0 }?.received(sig)
            }
            let shutdown = ShardShutdown(loop: loop, watcher: watcher)
            box.withLock { $0 = shutdown }
            return shutdown
        } catch {
            fail(3, "cannot watch SIGTERM and SIGINT: \(error)")
        }
    }

    /// The host to shut down on a signal; shuts it down at once if a signal came already.
    func serve(_ host: ShardHost) {
        let signalled = state.withLock { s -> Bool in
            s.host = host
            return s.signal != nil
        }
        if signalled { Task { await host.shutdown() } }
    }

    /// The signal received, if any.
    var signal: Int32? { state.withLock { $0.signal } }

    private func received(_ sig: Int32) {
        let host = state.withLock { s -> ShardHost? in
            if s.signal == nil { s.signal = sig }
            return s.host
        }
        if let host { Task { await host.shutdown() } }
    }

    /// Stops watching.
    func close() async {
        watcher.cancel()
        await loop.shutdown()
    }

    /// The exit status for how serving ended: 0 after the coordinator's stop or a SIGTERM /
    /// SIGINT, 1 when the connection was lost (the reason printed on stderr).
    func exitStatus(_ ending: ShardHost.Ending) -> Int32 {
        if signal != nil || ending == .stopped { return 0 }
        var line = Array("spindle-shard: exit 1: \(ending)\n".utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        return 1
    }
}
