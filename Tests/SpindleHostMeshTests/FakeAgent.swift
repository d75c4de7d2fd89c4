import Logging
@testable import SpindleHostMesh
import SpindleKernel
import SpindleSupport
import Synchronization

/// A scripted agent for client tests: answers config pushes and spawns the way a test says,
/// reports proc states only when told to, and handles each client's messages one at a time
/// (a slow answer delays the ones after it, as a busy agent would).
final class FakeAgent: Sendable {
    enum ConfigBehaviour: Sendable {
        case accept
        case reject(String)
        case acknowledgeWrongDigest
        case ignore
        /// Accept, but answer only after this long.
        case slow(Duration)
        /// Accept, but answer only when the client ends the session (just before that answer).
        case answerLate
    }
    enum SpawnBehaviour: Sendable {
        /// Accept and report starting, running, ready for every rank.
        case readyAtOnce
        /// Accept and never report anything (a host whose procs hang).
        case silent
        /// Accept; the rank exits with this code before it is ready.
        case exitBeforeReady(Int32)
    }
    enum StopBehaviour: Sendable {
        /// Report stopping then stopped(exit 0) for every rank.
        case stopAll
        /// Only answer (with the states the test pushed): the procs had already ended.
        case answerOnly
    }

    private struct State {
        var channels: [ControlChannel] = []
        var feeds: [AsyncStream<(HostMeshMessage, UInt64)>.Continuation] = []
        var config: ConfigSnapshot?
        var spawned: [SpawnRequest] = []
        var stops: [String] = []
        var sessionsEnded = 0
        /// Config answers held back (`answerLate`): correlation and digest.
        var held: [(UInt64, UInt64)] = []
        var states: [Int: ProcStatus] = [:]
        /// Called (once) when the next spawn arrives, before it is answered.
        var beforeSpawnReply: (@Sendable () -> Void)?
    }

    let configBehaviour: ConfigBehaviour
    let spawnBehaviour: SpawnBehaviour
    let stopBehaviour: StopBehaviour
    let address: Address
    private let state = Mutex(State())
    private let listener: Locked<ReliableListener?> = Locked(nil)

    init(transport: any Transport, address: Address, config: ConfigBehaviour = .accept,
         spawn: SpawnBehaviour = .readyAtOnce, stop: StopBehaviour = .stopAll) async throws {
        self.address = address
        self.configBehaviour = config
        self.spawnBehaviour = spawn
        self.stopBehaviour = stop
        var links = ReliableLink.Configuration()
        links.core.livenessBound = .seconds(60)   // the client decides when a host is lost
        let l = try await ReliableListener.listen(over: transport, on: address, configuration: links) { [weak self] link in
            let (inbox, feed) = AsyncStream<(HostMeshMessage, UInt64)>.makeStream()
            let (channel, handler) = ControlChannel.accepted(
                link, logger: Logger(label: "fake-agent"),
                onMessage: { _, message, correlation in feed.yield((message, correlation)) })
            self?.state.withLock { s in
                s.channels.append(channel)
                s.feeds.append(feed)
            }
            Task { [weak self] in
                for await (message, correlation) in inbox {
                    await self?.handle(message, correlation, channel)
                }
            }
            return handler
        }
        listener.withLock { $0 = l }
    }

    var installedConfig: ConfigSnapshot? { state.withLock { $0.config } }
    var spawnRequests: [SpawnRequest] { state.withLock { $0.spawned } }
    var stopRequests: [String] { state.withLock { $0.stops } }
    var sessionsEnded: Int { state.withLock { $0.sessionsEnded } }

    /// Runs `body` when the next spawn arrives, before it is answered.
    func beforeSpawnReply(_ body: @escaping @Sendable () -> Void) {
        state.withLock { $0.beforeSpawnReply = body }
    }

    /// Pushes a state to every client, as if a proc changed.
    func push(_ status: ProcStatus) {
        let channels = state.withLock { s in
            s.states[status.rank] = status
            return s.channels
        }
        for c in channels { c.sendOrLog(.procState(status)) }
    }

    /// Pushes a message to every client.
    func pushMessage(_ message: HostMeshMessage) {
        for c in state.withLock({ $0.channels }) { c.sendOrLog(message) }
    }

    func close() async {
        await listener.withLock { $0 }?.shutdown()
        for f in state.withLock({ $0.feeds }) { f.finish() }
    }

    private func handle(_ message: HostMeshMessage, _ correlation: UInt64, _ channel: ControlChannel) async {
        let reply = { (m: HostMeshMessage) in channel.sendOrLog(m, replyTo: correlation) }
        switch message {
        case .installConfig(let c):
            switch configBehaviour {
            case .accept:
                state.withLock { $0.config = c }
                reply(.configInstalled(digest: c.digest))
            case .slow(let delay):
                try? await Task.sleep(for: delay)
                state.withLock { $0.config = c }
                reply(.configInstalled(digest: c.digest))
            case .reject(let why):
                reply(.configRejected(reason: why))
            case .acknowledgeWrongDigest:
                reply(.configInstalled(digest: c.digest &+ 1))
            case .ignore:
                break
            case .answerLate:
                state.withLock { s in
                    s.config = c
                    s.held.append((correlation, c.digest))
                }
            }
        case .endSession:
            let held = state.withLock { s -> [(UInt64, UInt64)] in
                s.config = nil
                s.sessionsEnded += 1
                defer { s.held.removeAll() }
                return s.held
            }
            for (c, digest) in held { channel.sendOrLog(.configInstalled(digest: digest), replyTo: c) }
            reply(.sessionEnded)
        case .spawn(let r):
            let hook = state.withLock { s -> (@Sendable () -> Void)? in
                s.spawned.append(r)
                defer { s.beforeSpawnReply = nil }
                return s.beforeSpawnReply
            }
            hook?()
            reply(.spawnAccepted(mesh: r.mesh, ranks: r.procs.map(\.rank)))
            for p in r.procs {
                func push(_ s: ProcState) {
                    let st = ProcStatus(mesh: r.mesh, rank: p.rank, state: s, pid: Int32(1000 + p.rank))
                    state.withLock { $0.states[p.rank] = st }
                    channel.sendOrLog(.procState(st))
                }
                switch spawnBehaviour {
                case .readyAtOnce:
                    push(.starting); push(.running); push(.ready)
                case .silent:
                    break
                case .exitBeforeReady(let code):
                    push(.starting); push(.running); push(.stopped(exitCode: code, stderrTail: ["bye"]))
                }
            }
        case .stop(let mesh):
            let (ranks, states) = state.withLock { s -> ([Int], [ProcStatus]) in
                s.stops.append(mesh)
                let ranks = s.spawned.filter { $0.mesh == mesh }.flatMap { $0.procs.map(\.rank) }
                return (ranks, ranks.compactMap { s.states[$0] })
            }
            reply(.stopAccepted(mesh: mesh, states: states))
            if case .silent = spawnBehaviour { return }
            if case .answerOnly = stopBehaviour { return }
            for r in ranks {
                channel.sendOrLog(.procState(ProcStatus(mesh: mesh, rank: r, state: .stopping)))
                channel.sendOrLog(.procState(ProcStatus(mesh: mesh, rank: r, state: .stopped(exitCode: 0, stderrTail: []))))
            }
        case .queryStates(let mesh):
            let ranks = state.withLock { $0.spawned.filter { $0.mesh == mesh }.flatMap { $0.procs.map(\.rank) } }
            if case .silent = spawnBehaviour {
                reply(.states(mesh: mesh, []))
            } else {
                reply(.states(mesh: mesh, ranks.map { ProcStatus(mesh: mesh, rank: $0, state: .ready) }))
            }
        default:
            reply(.failure("fake agent: unexpected \(message.kind)"))
        }
    }
}
