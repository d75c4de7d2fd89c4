import Logging
import SpindleKernel
import Synchronization

/// What a host mesh and its slices share: one control link per host, and the live proc
/// meshes that state pushes are routed to.
final class HostMeshCore: Sendable {
    private struct State {
        var links: [ControlLink?]
        var procMeshes: [String: ProcMesh] = [:]
        var shutDown = false
    }

    let name: String
    let hosts: [Address]
    let transport: any Transport
    let configuration: HostMesh.Configuration
    private let state: Mutex<State>

    init(name: String, hosts: [Address], transport: any Transport, configuration: HostMesh.Configuration) {
        self.name = name
        self.hosts = hosts
        self.transport = transport
        self.configuration = configuration
        state = Mutex(State(links: Array(repeating: nil, count: hosts.count)))
    }

    var logger: Logger { configuration.logger }

    /// Wraps the connection to host `rank` in a link whose pushes reach the proc meshes.
    func adopt(_ connection: any TransportConnection, rank: Int) -> ControlLink {
        let link = ControlLink(
            connection: connection, logger: logger,
            onMessage: { [weak self] link, message, correlation in
                self?.pushed(message, correlation: correlation, from: link, rank: rank)
            },
            onClose: { [weak self] _, reason in
                self?.hostLost(rank: rank, reason: reason)
            })
        state.withLock { $0.links[rank] = link }
        return link
    }

    func link(_ rank: Int) -> ControlLink? { state.withLock { $0.links[rank] } }

    var isShutDown: Bool { state.withLock { $0.shutDown } }

    /// Registers a proc mesh; false if the name is taken by a live one.
    func register(_ mesh: ProcMesh) -> Bool {
        state.withLock { s in
            guard s.procMeshes[mesh.name] == nil else { return false }
            s.procMeshes[mesh.name] = mesh
            return true
        }
    }

    func unregister(_ mesh: ProcMesh) {
        state.withLock { s in
            if s.procMeshes[mesh.name] === mesh { s.procMeshes[mesh.name] = nil }
        }
    }

    var procMeshes: [ProcMesh] { state.withLock { Array($0.procMeshes.values) } }

    /// Marks the core shut down and closes every link.
    func closeAll() {
        let links = state.withLock { s -> [ControlLink] in
            s.shutDown = true
            s.procMeshes.removeAll()
            return s.links.compactMap { $0 }
        }
        for l in links { l.close() }
    }

    private func pushed(_ message: HostMeshMessage, correlation: UInt64, from link: ControlLink, rank: Int) {
        switch message {
        case .procState(let status):
            let mesh = state.withLock { $0.procMeshes[status.mesh] }
            mesh?.update(status, hostRank: rank)
        default:
            logger.warning("unexpected message from agent", metadata: ["host": "\(hosts[rank])", "kind": "\(message.kind)"])
            if correlation != 0 {
                link.sendOrLog(.failure("a host-mesh client does not accept message kind \(message.kind)"), replyTo: correlation)
            }
        }
    }

    private func hostLost(rank: Int, reason: CloseReason) {
        let (meshes, shutDown) = state.withLock { (Array($0.procMeshes.values), $0.shutDown) }
        if !shutDown, reason != .closedLocally {
            logger.warning("lost connection to agent", metadata: ["host": "\(hosts[rank])", "reason": "\(reason)"])
        }
        for m in meshes { m.hostLost(coreRank: rank, reason: reason) }
    }
}
