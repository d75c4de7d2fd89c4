import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A key file that could not be used or written: which file and why.
public struct ClusterKeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public var description: String { "cluster key file \(path): \(problem)" }
}

extension ClusterKey {
    /// The largest key file accepted (a key is one line of 44 base64 characters).
    public static let maximumFileSize = 4096

    /// Loads the key kept in a file written by `spindle keygen` (or `write(toFile:)`): one
    /// line holding the 32 key bytes in base64. The same file gives the same key to the
    /// `spindle host-agent` daemon, its procs (`SPINDLE_KEY_FILE`) and clients.
    /// - Throws: `ClusterKeyFileError` when the file cannot be read, is readable or writable
    ///   by its group or others, or does not hold exactly 256 bits of base64 key material.
    public init(contentsOfFile path: String) throws(ClusterKeyFileError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ClusterKeyFileError(path: path, problem: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ClusterKeyFileError(path: path, problem: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw ClusterKeyFileError(path: path, problem: "is not a regular file")
        }
        let exposed = info.st_mode & 0o077
        guard exposed == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw ClusterKeyFileError(path: path, problem:
                "is accessible to its group or others (mode 0\(mode)); a key file must be private: chmod 600 \(path)")
        }
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
                throw ClusterKeyFileError(path: path, problem: "is larger than \(ClusterKey.maximumFileSize) bytes: not a key file")
            }
        }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw ClusterKeyFileError(path: path, problem: "is empty") }
        guard let decoded = Data(base64Encoded: text) else {
            throw ClusterKeyFileError(path: path, problem:
                "does not hold a base64 key (write one with `spindle keygen \(path)`; passphrases are not accepted)")
        }
        do {
            try self.init(bytes: Array(decoded))
        } catch {
            throw ClusterKeyFileError(path: path, problem: "holds \(decoded.count * 8) bits of key material; a cluster key is 256 bits")
        }
    }

    /// The key as its file line: 32 bytes in base64 (44 characters). This is the secret itself:
    /// write it only to a private file.
    public var fileContents: String { Data(bytes).base64EncodedString() + "\n" }

    /// Writes the key to a new file at `path`, readable and writable by its owner only (0600).
    /// - Throws: `ClusterKeyFileError` when the file exists (it is never overwritten) or
    ///   cannot be created or written.
    public func write(toFile path: String) throws(ClusterKeyFileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let why = errno == EEXIST ? "already exists; refusing to overwrite a key file"
                : "cannot create: \(String(cString: strerror(errno)))"
            throw ClusterKeyFileError(path: path, problem: why)
        }
        var ok = fchmod(fd, 0o600) == 0
        let line = Array(fileContents.utf8)
        var written = 0
        while ok && written < line.count {
            let n = line[written...].withUnsafeBytes { systemWrite(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { ok = false } else { written += n }
        }
        if ok { ok = fsync(fd) == 0 }
        let error = ok ? nil : String(cString: strerror(errno))
        close(fd)
        if let error {
            unlink(path)
            throw ClusterKeyFileError(path: path, problem: "cannot write: \(error)")
        }
    }
}

/// `write(2)` (a method of `ClusterKey` shadows the name inside its extension).
private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, bytes, count)
}
