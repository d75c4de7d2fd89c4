import Logging
import SpindleKernel

/// An operator's view over several host meshes: their hosts de-duplicated in first-seen
/// order, each asked for its procs.
public struct MeshAdmin: Sendable {
    /// One host's answer.
    public struct HostReport: Sendable, Hashable {
        public var host: Address
        /// The meshes (by name, in the order given) that include this host.
        public var meshes: [String]
        /// What the agent reported, or why it could not be asked.
        public var result: Result<AgentInfo, LinkFailure>

        public static func == (a: Self, b: Self) -> Bool {
            a.host == b.host && a.meshes == b.meshes && "\(a.result)" == "\(b.result)"
        }

        public func hash(into h: inout Hasher) { h.combine(host) }
    }

    public let meshes: [HostMeshRef]

    public init(meshes: [HostMeshRef]) { self.meshes = meshes }

    /// Every host of every mesh, each once, in first-seen order.
    public var hosts: [Address] {
        var seen = Set<Address>()
        var out: [Address] = []
        for m in meshes {
            for h in m.hosts where seen.insert(h).inserted { out.append(h) }
        }
        return out
    }

    /// Asks every host's agent for its state, all at once, each within `timeout`.
    public func status(transport: any Transport, timeout: Duration = .seconds(5),
                       logger: Logger = Logger(label: "spindle.mesh-admin")) async -> [HostReport] {
        let hosts = self.hosts
        let results = await withTaskGroup(of: (Int, Result<AgentInfo, LinkFailure>).self) { group in
            for (i, host) in hosts.enumerated() {
                group.addTask {
                    (i, await MeshAdmin.ask(host, transport: transport, timeout: timeout, logger: logger))
                }
            }
            var out = [Result<AgentInfo, LinkFailure>?](repeating: nil, count: hosts.count)
            for await (i, r) in group { out[i] = r }
            return out
        }
        return hosts.enumerated().map { i, h in
            HostReport(host: h, meshes: meshes.filter { $0.hosts.contains(h) }.map(\.name),
                       result: results[i] ?? .failure(.timedOut(timeout)))
        }
    }

    private static func ask(_ host: Address, transport: any Transport, timeout: Duration,
                            logger: Logger) async -> Result<AgentInfo, LinkFailure> {
        let connected = await withDeadline(timeout, late: { r in
            if case .success(let c) = r { c.close() }
        }) { () async -> Result<any TransportConnection, TransportError> in
            do throws(TransportError) { return .success(try await transport.connect(to: host)) } catch { return .failure(error) }
        }
        guard let connected else { return .failure(.timedOut(timeout)) }
        let connection: any TransportConnection
        switch connected {
        case .failure(let e): return .failure(.transport(e))
        case .success(let c): connection = c
        }
        let link = ControlLink(connection: connection, logger: logger, onMessage: { _, _, _ in })
        defer { link.close() }
        do {
            switch try await link.request(.agentInfo, timeout: timeout) {
            case .info(let info): return .success(info)
            case let other: return .failure(.transport(.closed(.protocolViolation("unexpected reply kind \(other.kind)"))))
            }
        } catch {
            return .failure(error)
        }
    }

    /// The reports as a text table: one row per proc, or one per host without procs.
    public static func table(_ reports: [HostReport]) -> String {
        var rows: [[String]] = [["HOST", "MESHES", "AGENT", "PROC MESH", "RANK", "STATE", "PID"]]
        for r in reports {
            let meshes = r.meshes.joined(separator: ",")
            switch r.result {
            case .failure(let f):
                rows.append([r.host.description, meshes, "unreachable: \(f)", "-", "-", "-", "-"])
            case .success(let info):
                let agent = "pid \(info.pid)" + (info.configDigest.map { ", config \(String($0, radix: 16))" } ?? ", no config")
                if info.procs.isEmpty {
                    rows.append([r.host.description, meshes, agent, "-", "-", "-", "-"])
                }
                for p in info.procs {
                    rows.append([r.host.description, meshes, agent, p.mesh, String(p.rank),
                                 p.state.description, p.pid.map(String.init) ?? "-"])
                }
            }
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { c, cell in
                c == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[c] - cell.count)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
