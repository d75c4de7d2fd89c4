#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A key file that could not be used: which file and why.
public struct ClusterKeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public var description: String { "cluster key file \(path): \(problem)" }
}

extension ClusterKey {
    /// The largest key file accepted.
    public static let maximumFileSize = 64 << 10

    /// Loads the cluster key kept in a file: its contents, trailing whitespace removed, are the
    /// passphrase (`ClusterKey(passphrase:)`). The same file gives the same key to the
    /// `spindle host-agent` daemon, its procs (`SPINDLE_KEY_FILE`) and clients.
    public init(contentsOfFile path: String) throws(ClusterKeyFileError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ClusterKeyFileError(path: path, problem: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClusterKeyFileError(path: path, problem: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= ClusterKey.maximumFileSize else {
                throw ClusterKeyFileError(path: path, problem: "larger than \(ClusterKey.maximumFileSize) bytes")
            }
        }
        while let last = bytes.last, last == 10 || last == 13 || last == 32 || last == 9 { bytes.removeLast() }
        guard !bytes.isEmpty else { throw ClusterKeyFileError(path: path, problem: "is empty") }
        self.init(passphrase: String(decoding: bytes, as: UTF8.self))
    }
}
