import SpindleKernel

/// Starts host agents on a set of hosts and stops them again: how a cluster comes up.
///
/// `LocalLauncher` runs agents as child processes of this one (tests, the demo, one machine);
/// `SSHLauncher` runs `spindle host-agent` on remote machines through the system `ssh` client,
/// the way Dask's SSHCluster and Ray's cluster launcher do. A Slurm or Kubernetes launcher
/// fits the same protocol: start one agent per allocated node (`srun`, a DaemonSet), read
/// each agent's `listening on` line, and stop them when the allocation ends (docs/deploy.md).
public protocol HostLauncher: Sendable {
    /// Starts one agent per host and returns the address each listens on (advertised: what
    /// clients dial), in host order.
    /// - Throws: `LaunchError` naming the first host that failed and why; agents already
    ///   started are stopped first.
    func up() async throws(LaunchError) -> [Address]
    /// Stops every agent this launcher started (their procs die with them).
    func down() async
}

/// A host agent that could not be started.
public struct LaunchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The host, as the launcher was given it.
    public var host: String
    /// What went wrong, with the agent's or ssh's last words when there were any.
    public var problem: String

    public init(host: String, problem: String) {
        self.host = host
        self.problem = problem
    }

    public var description: String { "cannot start a host agent on \(host): \(problem)" }
}
