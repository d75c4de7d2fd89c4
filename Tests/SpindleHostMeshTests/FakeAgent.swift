import Logging
import SpindleKernel
import Synchronization
@testable import SpindleHostMesh

/// A scripted agent for client tests: answers config pushes and spawns the way a test says,
/// and reports proc states only when told to.
final class FakeAgent: Sendable {
    enum ConfigBehaviour: Sendable {
        case accept
        case reject(String)
        case acknowledgeWrongDigest
        case ignore
    }
    enum SpawnBehaviour: Sendable {
        /// Accept and report starting, running, ready for every rank.
        case readyAtOnce
        /// Accept and never report anything (a host whose procs hang).
        case silent
        /// Accept; the rank exits with this code before it is ready.
        case exitBeforeReady(Int32)
    }

    private struct State {
        var links: [ControlLink] = []
        var config: ConfigSnapshot?
        var spawned: [SpawnRequest] = []
        var stops: [String] = []
    }

    let configBehaviour: ConfigBehaviour
    let spawnBehaviour: SpawnBehaviour
    let address: Address
    private let state = Mutex(State())
    private let listener: Locked<(any TransportListener)?> = Locked(nil)

    init(transport: any Transport, address: Address, config: ConfigBehaviour = .accept,
         spawn: SpawnBehaviour = .readyAtOnce) async throws {
        self.address = address
        self.configBehaviour = config
        self.spawnBehaviour = spawn
        let l = try await transport.listen(on: address) { [weak self] connection in
            guard let self else { return }
            let link = ControlLink(connection: connection, logger: Logger(label: "fake-agent"),
                                   onMessage: { [weak self] link, message, correlation in
                                       self?.handle(message, correlation, link)
                                   })
            self.state.withLock { $0.links.append(link) }
        }
        listener.withLock { $0 = l }
    }

    var installedConfig: ConfigSnapshot? { state.withLock { $0.config } }
    var spawnRequests: [SpawnRequest] { state.withLock { $0.spawned } }
    var stopRequests: [String] { state.withLock { $0.stops } }

    func close() {
        listener.withLock { $0 }?.close()
        for l in state.withLock({ $0.links }) { l.close() }
    }

    private func handle(_ message: HostMeshMessage, _ correlation: UInt64, _ link: ControlLink) {
        switch message {
        case .installConfig(let c):
            switch configBehaviour {
            case .accept:
                state.withLock { $0.config = c }
                link.sendOrLog(.configInstalled(digest: c.digest), replyTo: correlation)
            case .reject(let why):
                link.sendOrLog(.configRejected(reason: why), replyTo: correlation)
            case .acknowledgeWrongDigest:
                link.sendOrLog(.configInstalled(digest: c.digest &+ 1), replyTo: correlation)
            case .ignore:
                break
            }
        case .spawn(let r):
            state.withLock { $0.spawned.append(r) }
            link.sendOrLog(.spawnAccepted(mesh: r.mesh, ranks: r.procs.map(\.rank)), replyTo: correlation)
            for p in r.procs {
                func push(_ s: ProcState) {
                    link.sendOrLog(.procState(ProcStatus(mesh: r.mesh, rank: p.rank, state: s, pid: Int32(1000 + p.rank))))
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
            state.withLock { $0.stops.append(mesh) }
            let ranks = state.withLock { $0.spawned.filter { $0.mesh == mesh }.flatMap { $0.procs.map(\.rank) } }
            link.sendOrLog(.stopAccepted(mesh: mesh, ranks: ranks), replyTo: correlation)
            if case .silent = spawnBehaviour { return }
            for r in ranks {
                link.sendOrLog(.procState(ProcStatus(mesh: mesh, rank: r, state: .stopping)))
                link.sendOrLog(.procState(ProcStatus(mesh: mesh, rank: r, state: .stopped(exitCode: 0, stderrTail: []))))
            }
        case .queryStates(let mesh):
            let ranks = state.withLock { $0.spawned.filter { $0.mesh == mesh }.flatMap { $0.procs.map(\.rank) } }
            if case .silent = spawnBehaviour {
                link.sendOrLog(.states(mesh: mesh, []), replyTo: correlation)
            } else {
                link.sendOrLog(.states(mesh: mesh, ranks.map { ProcStatus(mesh: mesh, rank: $0, state: .ready) }), replyTo: correlation)
            }
        default:
            link.sendOrLog(.failure("fake agent: unexpected \(message.kind)"), replyTo: correlation)
        }
    }
}
