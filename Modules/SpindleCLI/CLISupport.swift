import ArgumentParser
import Logging
import Spindle
import SpindleSupport

#if canImport(Glibc)
import Glibc
#endif

/// Options every networked subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "File holding the cluster key (written by `spindle keygen`; mode 0600).")
    var keyFile: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func logLevelValue() throws -> Logger.Level {
        guard let l = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level \"\(logLevel)\"")
        }
        return l
    }
}

/// A failure the CLI reports on stderr with exit code 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
}

/// Sends swift-log output to stderr at `level` (once per process).
func bootstrapLogging(_ level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = level
        return h
    }
}

/// Reads a whole (small) file.
func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw CLIError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { throw CLIError(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        out += buf[0..<n]
        if out.count > 1 << 20 { throw CLIError(description: "\(path) is larger than 1 MiB") }
    }
    return out
}

/// Writes `text` to `path`, replacing it.
func writeFile(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw CLIError(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { throw CLIError(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
        off += n
    }
}

/// The cluster key in `path` (see `ClusterKey(contentsOfFile:)`).
func loadClusterKey(_ path: String) throws -> ClusterKey {
    try ClusterKey(contentsOfFile: path)
}

/// An absolute form of `path` (relative to the working directory).
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    guard let cwd = getcwd(nil, 0) else { return path }
    defer { free(cwd) }
    return String(cString: cwd) + "/" + path
}

/// Prints a line and flushes stdout (it may be a pipe a supervisor reads).
func printFlushed(_ line: String) {
    print(line)
    fflush(nil)
}

/// Calls `body` (once, on a thread of its own) when standard input reaches its end: the
/// thread blocks in read(2), so no event loop or task is held up.
func onStandardInputClosed(_ body: @escaping @Sendable () -> Void) throws(ThreadStartError) {
    let watch: @Sendable () -> Void = {
        var byte: UInt8 = 0
        while true {
            let n = read(0, &byte, 1)
            if n > 0 { continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        body()
    }
    try SpindleThread.detached(name: "spindle-stdin", watch)
}
