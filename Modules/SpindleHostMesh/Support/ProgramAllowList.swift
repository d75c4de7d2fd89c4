#if canImport(Glibc)
import Glibc
#endif

/// The programs an agent may start, compared by real path (symlinks and `..` resolved).
public struct ProgramAllowList: Sendable, Hashable {
    /// Real paths of the allowed programs.
    public let realPaths: Set<String>

    /// - Parameter programs: paths or names looked up in `PATH`; entries that do not resolve
    ///   are left out (`unresolved` lists them).
    public init(programs: [String]) {
        var paths = Set<String>()
        var missing: [String] = []
        for p in programs {
            if let r = ProgramAllowList.resolve(p) { paths.insert(r) } else { missing.append(p) }
        }
        realPaths = paths
        unresolved = missing
    }

    /// Allow-list entries that named no executable file.
    public let unresolved: [String]

    /// The default: only the running executable itself.
    public static func ownExecutable() -> ProgramAllowList {
        ProgramAllowList(programs: [executablePath() ?? "/proc/self/exe"])
    }

    /// Resolves `program` and checks it.
    /// - Returns: the real path to execute.
    /// - Throws: `SpawnRefusal.programNotFound` or `.programNotAllowed`.
    public func check(_ program: String) throws(SpawnRefusal) -> String {
        guard let real = ProgramAllowList.resolve(program) else { throw .programNotFound(program: program) }
        guard realPaths.contains(real) else { throw .programNotAllowed(program: program, resolved: real) }
        return real
    }

    /// The real path of `program` (a path, or a name searched in `PATH`) if it is an
    /// executable regular file.
    public static func resolve(_ program: String) -> String? {
        guard !program.isEmpty else { return nil }
        if program.contains("/") { return realExecutable(program) }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            if let r = realExecutable("\(dir)/\(program)") { return r }
        }
        return nil
    }

    /// The running executable's real path.
    public static func executablePath() -> String? { realExecutable("/proc/self/exe") }

    private static func realExecutable(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        let real = String(cString: p)
        var st = stat()
        guard stat(real, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(real, X_OK) == 0 else { return nil }
        return real
    }
}
