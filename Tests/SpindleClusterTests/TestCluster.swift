import Foundation
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing

/// A cluster of network namespaces made by scripts/testcluster: hosts spn1…spnN at
/// 10.77.0.1…N, and the root namespace (this test process) at 10.77.0.254 on their bridge.
struct TestCluster {
    struct Host {
        let name: String
        let address: String
    }

    let hosts: [Host]
    /// This namespace's address on the cluster's bridge.
    static let rootAddress = "10.77.0.254"

    /// The repository's root, found from this file's path.
    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static var script: String { repository + "/scripts/testcluster" }

    /// Why the cluster tests cannot run here (nil: they can): they need root and the tools.
    static let unavailable: String? = {
        if getuid() != 0 { return "the cluster tests need root (CAP_NET_ADMIN) to create network namespaces" }
        if access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0 { return "the ip command (iproute2) is missing" }
        return nil
    }()

    /// Runs `body` with a fresh cluster of `count` hosts and removes it afterwards, whatever
    /// happens.
    static func with<R>(_ count: Int, _ body: (TestCluster) async throws -> R) async throws -> R {
        _ = try run(script, ["down"])
        let out = try run(script, ["up", "\(count)"])
        let hosts = out.split(separator: "\n").compactMap { line -> Host? in
            let parts = line.split(separator: " ")
            return parts.count == 2 ? Host(name: String(parts[0]), address: String(parts[1])) : nil
        }
        guard hosts.count == count else {
            _ = try? run(script, ["down"])
            throw ClusterTestError("testcluster up \(count) printed \(out)")
        }
        do {
            let r = try await body(TestCluster(hosts: hosts))
            _ = try run(script, ["down"])
            return r
        } catch {
            _ = try? run(script, ["down"])
            throw error
        }
    }

    /// `argv` run inside `host`'s namespace.
    func inside(_ host: Host, _ argv: [String]) -> [String] {
        ["/usr/sbin/ip", "netns", "exec", host.name] + argv
    }

    func cut(_ host: Host) throws { _ = try Self.run(Self.script, ["cut", host.name]) }
    func heal(_ host: Host) throws { _ = try Self.run(Self.script, ["heal", host.name]) }
    func loss(_ host: Host, percent: Int) throws { _ = try Self.run(Self.script, ["loss", host.name, "\(percent)"]) }

    /// Pids of every process in `host`'s namespace.
    func processes(in host: Host) throws -> [Int32] {
        try Self.run("/usr/sbin/ip", ["netns", "pids", host.name]).split(separator: "\n").compactMap { Int32($0) }
    }

    /// Runs a command to completion; returns its stdout, throws with its stderr on failure.
    /// (posix_spawn and `waitpid` on its pid: Foundation's `Process` reaps children in ways
    /// that would steal other tests' exits from libuv.)
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], allowFailure: Bool = false) throws -> String {
        let (status, out, err) = try execute(executable, arguments)
        if status != 0 && !allowFailure {
            throw ClusterTestError("\(executable) \(arguments.joined(separator: " ")) exited \(status): \(err)")
        }
        return out
    }

    /// Runs a command to completion: its exit status (128 + signal for a signal), stdout, stderr.
    static func execute(_ executable: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let base = NSTemporaryDirectory() + "spindle-run-\(UInt32.random(in: 0 ... .max))"
        let outPath = base + ".out", errPath = base + ".err"
        defer { unlink(outPath); unlink(errPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw ClusterTestError("cannot run \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exited, out, err)
    }

    /// An executable built next to the test binary.
    static func product(_ name: String) throws -> String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent(name).path
            if access(candidate, X_OK) == 0 { return candidate }
            dir.deleteLastPathComponent()
        }
        throw ClusterTestError("\(name) is not built next to the test binary (swift build --build-tests)")
    }
}

struct ClusterTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A private directory for keys and state files, removed afterwards.
func withScratchDirectory<R>(_ body: (String) async throws -> R) async throws -> R {
    let dir = NSTemporaryDirectory() + "spindle-cluster-\(UInt32.random(in: 0 ... .max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o700])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try await body(dir)
}

/// sshd in every host of a cluster, accepting one generated client key: what
/// `spindle cluster up --ssh` needs on real machines.
struct TestSSH {
    let directory: String
    let clientKey: String
    private let pidFiles: [String]

    /// Starts sshd in each host (installing openssh-server when missing).
    static func start(in cluster: TestCluster, directory: String) throws -> TestSSH {
        if access("/usr/sbin/sshd", X_OK) != 0 {
            try TestCluster.run("/usr/bin/apt-get", ["install", "-y", "-qq", "openssh-server"], allowFailure: true)
            guard access("/usr/sbin/sshd", X_OK) == 0 else { throw ClusterTestError("openssh-server is not installed and could not be") }
        }
        try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        let hostKey = directory + "/ssh_host_key", clientKey = directory + "/client_key"
        try TestCluster.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey])
        try TestCluster.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", clientKey])
        try FileManager.default.copyItem(atPath: clientKey + ".pub", toPath: directory + "/authorized_keys")
        var pidFiles: [String] = []
        for host in cluster.hosts {
            let pidFile = directory + "/sshd-\(host.name).pid"
            try TestCluster.run("/usr/sbin/ip", cluster.inside(host, [
                "/usr/sbin/sshd", "-f", "/dev/null", "-o", "HostKey=\(hostKey)", "-o", "ListenAddress=\(host.address)",
                "-o", "AuthorizedKeysFile=\(directory)/authorized_keys", "-o", "PidFile=\(pidFile)",
                "-o", "StrictModes=no", "-o", "PermitRootLogin=prohibit-password", "-o", "UsePAM=no",
            ]).dropFirst().map { $0 })
            pidFiles.append(pidFile)
        }
        return TestSSH(directory: directory, clientKey: clientKey, pidFiles: pidFiles)
    }

    /// The ssh options a launcher needs to reach these hosts.
    var launcherArguments: [String] {
        ["--identity", clientKey, "--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null",
         "--ssh-option", "LogLevel=ERROR"]
    }

    func stop() {
        for file in pidFiles {
            if let text = try? String(contentsOfFile: file, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGTERM)
            }
        }
    }
}
