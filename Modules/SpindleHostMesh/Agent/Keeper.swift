#if canImport(Glibc)
import Glibc
#endif

/// The `spindle-keeper` executable (Modules/SpindleKeeper): every proc runs under one, which
/// puts the proc in its own session and process group, forwards stop signals to the group,
/// and kills the group and every descendant when the proc ends or the agent dies (see
/// docs/hostmesh.md, "Process groups and no orphans").
enum Keeper {
    static let executableName = "spindle-keeper"
    /// Environment variable naming the keeper executable.
    static let environmentVariable = "SPINDLE_KEEPER"
    /// The signal that makes a keeper SIGKILL its proc's group and descendants. The agent
    /// never sends a keeper SIGKILL: a killed keeper could not clean up.
    static let killSignal = SIGUSR1

    /// Where to look, in order: `SPINDLE_KEEPER`, next to this process's executable and up to
    /// three directories above it (a test bundle inside `.build/<config>/`), then `PATH`.
    static func candidates() -> [String] {
        var out: [String] = []
        if let env = getenv(environmentVariable) { out.append(String(cString: env)) }
        if var dir = ProgramAllowList.executablePath() {
            for _ in 0..<4 {
                guard let slash = dir.lastIndex(of: "/") else { break }
                dir = String(dir[..<slash])
                out.append((dir.isEmpty ? "" : dir) + "/" + executableName)
            }
        }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for d in path.split(separator: ":") where !d.isEmpty { out.append("\(d)/\(executableName)") }
        return out
    }

    /// The keeper to use: `configured` if given (it must be executable), else the first of
    /// `candidates()` that is.
    static func locate(configured: String?) -> Result<String, HostAgentError> {
        let list = configured.map { [$0] } ?? candidates()
        for c in list where access(c, X_OK) == 0 {
            var st = stat()
            if stat(c, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { return .success(c) }
        }
        return .failure(.keeperNotFound(searched: list))
    }

    /// Parses the keeper's first stdout line, `SPINDLE-KEEPER <keeper pid> <proc pid>`.
    /// - Returns: the proc's pid, or nil when the line is not a keeper header.
    static func procPID(fromHeader line: String) -> Int32? {
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[0] == "SPINDLE-KEEPER", let pid = Int32(parts[2]), pid > 0 else { return nil }
        return pid
    }

    /// The signal to send the keeper for `signal` meant for the proc.
    static func keeperSignal(for signal: Int32) -> Int32 {
        signal == SIGKILL ? killSignal : signal
    }
}
