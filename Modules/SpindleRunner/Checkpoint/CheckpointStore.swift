import SpindleKernel
import SpindleSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One shard's part of a checkpoint: its snapshot and its ghost cache (least recently used first).
struct ShardCheckpoint: Sendable, Equatable {
    var shard: ShardID
    var tick: UInt64
    var snapshot: [UInt8]
    var ghosts: [GhostNode]

    static let magic = Array("SPNDLCK1".utf8)

    /// The file's bytes: magic, shard, tick, snapshot, ghosts, then a checksum of all of it.
    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 64 + snapshot.count + ghosts.count * 48)
        w.bytes.append(contentsOf: ShardCheckpoint.magic)
        w.u64(shard.value)
        w.u64(tick)
        w.u64(UInt64(snapshot.count))
        w.bytes.append(contentsOf: snapshot)
        w.count(ghosts.count)
        for g in ghosts { g.encode(into: &w) }
        w.u64(Checksum.of(w.bytes))
        return w.bytes
    }

    static func decode(_ bytes: [UInt8], file: String) throws(RunnerError) -> ShardCheckpoint {
        guard bytes.count >= magic.count + 8, Array(bytes[0..<magic.count]) == magic else {
            throw .checkpointCorrupt(file: file, reason: "not a shard checkpoint file (bad magic)")
        }
        let body = bytes.count - 8
        let stored = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: body, as: UInt64.self)) }
        let actual = bytes.withUnsafeBytes { Checksum.of(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
        guard stored == actual else { throw .checkpointCorrupt(file: file, reason: "the checksum does not match the contents") }
        var r = ByteReader(bytes[magic.count..<body])
        do {
            let shard = ShardID(try r.u64("shard"))
            let tick = try r.u64("tick")
            let at = r.offset
            let length = try r.u64("snapshot length")
            guard length <= UInt64(bytes.count) else {
                throw WireDecodeError(field: "snapshot length", offset: at, problem: "\(length) bytes is more than the file")
            }
            let snapshot = try r.raw(Int(length), "snapshot")
            var ghosts: [GhostNode] = []
            for _ in 0..<(try r.count("ghost count", minimumSize: 28)) { ghosts.append(try GhostNode.decode(&r)) }
            try r.expectEnd("shard checkpoint")
            return ShardCheckpoint(shard: shard, tick: tick, snapshot: snapshot, ghosts: ghosts)
        } catch {
            throw .checkpointCorrupt(file: file, reason: "\(error)")
        }
    }
}

/// Failures a test injects into checkpoint writing (a crash mid-checkpoint).
final class CheckpointFaults: Sendable {
    private let failing = Mutex<Set<String>>([])

    /// Makes the next write of a file named `name` fail halfway.
    func failWrite(of name: String) { failing.withLock { _ = $0.insert(name) } }

    func shouldFail(_ name: String) -> Bool { failing.withLock { $0.remove(name) != nil } }
}

/// Writes and reads checkpoint directories: shard files into a fresh subdirectory, then the
/// manifest, each written, fsynced and renamed into place, so the manifest names either the
/// previous complete checkpoint or the new complete one — never a partial one.
enum CheckpointStore {
    static let manifestName = "manifest"
    private static let counter = Atomic<UInt64>(0)

    /// Writes a checkpoint into `directory` (created if missing) and makes it the current one;
    /// then removes older checkpoints' subdirectories.
    /// - Returns: the manifest written.
    static func write(to directory: String, tick: UInt64, placement: PlacementStrategy,
                      shards: [(checkpoint: ShardCheckpoint, digest: UInt64)],
                      collectives: [CheckpointManifest.Collective],
                      faults: CheckpointFaults? = nil) throws(RunnerError) -> CheckpointManifest {
        try makeDirectories(directory)
        let nonce = StableHash.mix(UInt64(getpid()) << 32 ^ SystemClock().wallNanoseconds() ^ counter.wrappingAdd(1, ordering: .relaxed).newValue)
        let name = "tick-\(tick)-\(hex(nonce).prefix(8))"
        let partial = directory + "/.partial-" + name
        do {
            try makeDirectory(partial)
            var entries: [CheckpointManifest.Entry] = []
            for (checkpoint, digest) in shards {
                let file = "shard-\(checkpoint.shard.value).snap"
                let bytes = checkpoint.encode()
                try writeFile(partial + "/" + file, bytes, failHalfway: faults?.shouldFail(file) ?? false)
                entries.append(CheckpointManifest.Entry(shard: checkpoint.shard, file: file, bytes: bytes.count,
                                                        checksum: Checksum.of(bytes), digest: digest))
            }
            try syncDirectory(partial)
            try rename(partial, to: directory + "/" + name)
            try syncDirectory(directory)
            let manifest = CheckpointManifest(tick: tick, placement: placement, shards: entries,
                                              collectives: collectives, directory: name)
            let temporary = directory + "/" + manifestName + ".partial"
            try writeFile(temporary, Array(manifest.encode().utf8),
                          failHalfway: faults?.shouldFail(manifestName) ?? false)
            try rename(temporary, to: directory + "/" + manifestName)
            try syncDirectory(directory)
            removeStale(in: directory, keeping: name)
            return manifest
        } catch {
            removeTree(partial)
            unlink(directory + "/" + manifestName + ".partial")
            throw error
        }
    }

    /// Reads the current checkpoint of `directory`: its manifest and every shard file, checked
    /// against the manifest's sizes and checksums.
    static func read(from directory: String) throws(RunnerError) -> (CheckpointManifest, [ShardCheckpoint]) {
        let manifestPath = directory + "/" + manifestName
        let manifest = try CheckpointManifest.decode(try readFile(manifestPath), file: manifestPath)
        var shards: [ShardCheckpoint] = []
        for e in manifest.shards {
            let path = directory + "/" + manifest.directory + "/" + e.file
            let bytes = try readFile(path)
            guard bytes.count == e.bytes else {
                throw .checkpointCorrupt(file: path, reason: "\(bytes.count) bytes, the manifest says \(e.bytes)")
            }
            guard Checksum.of(bytes) == e.checksum else {
                throw .checkpointCorrupt(file: path, reason: "the checksum does not match the manifest's")
            }
            let shard = try ShardCheckpoint.decode(bytes, file: path)
            guard shard.shard == e.shard, shard.tick == manifest.tick else {
                throw .checkpointCorrupt(file: path, reason: "holds \(shard.shard) at tick \(shard.tick); the manifest says \(e.shard) at tick \(manifest.tick)")
            }
            shards.append(shard)
        }
        return (manifest, shards)
    }

    // MARK: Files

    private static func failure(_ path: String, _ what: String) -> RunnerError {
        .checkpointFailed(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
    }

    static func makeDirectories(_ path: String) throws(RunnerError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { throw failure(prefix, "cannot create the directory") }
            prefix += "/"
        }
    }

    private static func makeDirectory(_ path: String) throws(RunnerError) {
        guard mkdir(path, 0o755) == 0 else { throw failure(path, "cannot create the directory") }
    }

    private static func writeFile(_ path: String, _ bytes: [UInt8], failHalfway: Bool) throws(RunnerError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "cannot create the file") }
        defer { close(fd) }
        let limit = failHalfway ? bytes.count / 2 : bytes.count
        var written = 0
        while written < limit {
            let n = bytes.withUnsafeBytes { posixWrite(fd, $0.baseAddress! + written, limit - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(path, "cannot write")
            }
            written += n
        }
        if failHalfway {
            throw .checkpointFailed(path: path, reason: "write failed after \(written) of \(bytes.count) bytes (injected fault)")
        }
        guard fsync(fd) == 0 else { throw failure(path, "cannot fsync") }
    }

    private static func rename(_ from: String, to: String) throws(RunnerError) {
        #if canImport(Glibc)
        let status = Glibc.rename(from, to)
        #else
        let status = Darwin.rename(from, to)
        #endif
        guard status == 0 else { throw failure(to, "cannot rename \(from) to it") }
    }

    private static func syncDirectory(_ path: String) throws(RunnerError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(path, "cannot open the directory") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure(path, "cannot fsync the directory") }
    }

    static func readFile(_ path: String) throws(RunnerError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(path, "cannot open") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(path, "cannot stat") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw .checkpointCorrupt(file: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(path, "cannot read")
            }
            if n == 0 { break }
            done += n
        }
        guard done == size else { throw .checkpointCorrupt(file: path, reason: "shrank while being read") }
        return bytes
    }

    /// Removes the subdirectories of older (and abandoned) checkpoints.
    private static func removeStale(in directory: String, keeping name: String) {
        for entry in listDirectory(directory) where entry != name && (entry.hasPrefix("tick-") || entry.hasPrefix(".partial-")) {
            removeTree(directory + "/" + entry)
        }
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a file or a directory with everything in it (best effort).
    static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for entry in listDirectory(path) { removeTree(path + "/" + entry) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
