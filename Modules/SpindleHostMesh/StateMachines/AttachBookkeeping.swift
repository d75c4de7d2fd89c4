import SpindleKernel

/// The bookkeeping of one config push to every host of a mesh, without I/O.
///
/// The shell connects to each host (or reuses a connection), reports each event here, and
/// performs the returned actions. The push completes when every host has an outcome or the
/// deadline passes: success only when every host installed the pushed snapshot (HM-1); any
/// other outcome is a `ConfigPushError` listing each failing host with its cause (HM-2, HM-4).
/// Failures are outcomes of this machine, so they reach the caller as the call's error and
/// nowhere else (HM-3).
public struct AttachBookkeeping: Sendable {
    /// Where one host stands.
    public enum HostOutcome: Sendable, Hashable {
        case connecting
        case pushed
        case installed
        case failed(ConfigPushFailure)
    }

    /// What the shell must do.
    public enum Action: Sendable, Hashable {
        /// Send the snapshot to the host at this rank.
        case pushConfig(rank: Int)
        /// The push failed: close every connection opened for it (none stays half-configured
        /// behind the caller's back).
        case abandon
    }

    public let mesh: String
    public let hosts: [Address]
    public let digest: UInt64
    public let started: MonotonicInstant
    public let deadline: MonotonicInstant
    public private(set) var outcomes: [HostOutcome]
    private var finished = false

    public init(mesh: String, hosts: [Address], digest: UInt64, now: MonotonicInstant, timeout: Duration) {
        self.mesh = mesh
        self.hosts = hosts
        self.digest = digest
        self.started = now
        self.deadline = now + timeout
        self.outcomes = Array(repeating: .connecting, count: hosts.count)
    }

    /// The connection to `rank` is up: push the snapshot.
    public mutating func connected(rank: Int) -> [Action] {
        guard outcomes[rank] == .connecting else { return [] }
        outcomes[rank] = .pushed
        return [.pushConfig(rank: rank)]
    }

    /// The snapshot is already being pushed on an existing connection (`pushConfig` on an
    /// attached mesh).
    public mutating func pushing(rank: Int) {
        if outcomes[rank] == .connecting { outcomes[rank] = .pushed }
    }

    /// The host acknowledged installing the snapshot with `digest`.
    public mutating func acknowledged(rank: Int, digest acked: UInt64) -> [Action] {
        guard isOpen(rank) else { return [] }
        outcomes[rank] = acked == digest ? .installed
            : .failed(.digestMismatch(expected: digest, acknowledged: acked))
        return finishIfDone()
    }

    /// The host failed: could not be reached, refused authentication, rejected the config,
    /// or lost its connection.
    public mutating func failed(rank: Int, _ cause: ConfigPushFailure) -> [Action] {
        guard isOpen(rank) else { return [] }
        outcomes[rank] = .failed(cause)
        return finishIfDone()
    }

    /// Time passed: at the deadline every host without an outcome has timed out.
    public mutating func poll(now: MonotonicInstant) -> [Action] {
        guard !finished, now >= deadline else { return [] }
        for i in outcomes.indices where isOpen(i) {
            outcomes[i] = .failed(.timedOut(after: deadline - started))
        }
        return finishIfDone()
    }

    /// nil while some host has no outcome; then success or the error listing each failing host.
    public var result: Result<Void, ConfigPushError>? {
        guard outcomes.allSatisfy({ !isOpenOutcome($0) }) else { return nil }
        let failures = outcomes.enumerated().compactMap { i, o -> HostFailure? in
            if case .failed(let cause) = o { return HostFailure(rank: i, host: hosts[i], cause: cause) }
            return nil
        }
        if failures.isEmpty { return .success(()) }
        return .failure(ConfigPushError(mesh: mesh, hostCount: hosts.count, failures: failures))
    }

    private func isOpen(_ rank: Int) -> Bool { isOpenOutcome(outcomes[rank]) }

    private func isOpenOutcome(_ o: HostOutcome) -> Bool {
        o == .connecting || o == .pushed
    }

    private mutating func finishIfDone() -> [Action] {
        guard !finished, let r = result else { return [] }
        finished = true
        if case .failure = r { return [.abandon] }
        return []
    }
}
