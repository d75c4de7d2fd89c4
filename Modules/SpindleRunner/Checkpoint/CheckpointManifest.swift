import SpindleKernel

/// What a checkpoint holds, as its manifest says: the tick, the placement, and for each shard
/// its file, size, checksum and state digest; the collective results the next tick sees.
///
/// A checkpoint directory looks like this:
/// ```
/// <directory>/manifest                     the current checkpoint (replaced atomically)
/// <directory>/tick-42-5f1e…/shard-1.snap    one file per shard
/// <directory>/tick-42-5f1e…/shard-2.snap
/// ```
/// The manifest is text, one field per line, ending with a checksum of everything above it.
public struct CheckpointManifest: Sendable, Equatable {
    /// The tick the checkpoint was taken after.
    public var tick: UInt64
    /// The placement the shards were partitioned with.
    public var placement: PlacementStrategy
    /// One entry per shard, in increasing id order.
    public var shards: [Entry]
    /// The collective results of `tick` (what the next tick's Sense sees), encoded, by name.
    public var collectives: [Collective]
    /// The subdirectory holding the shard files.
    public var directory: String

    /// One shard's file.
    public struct Entry: Sendable, Equatable {
        public var shard: ShardID
        /// The file name inside the checkpoint's subdirectory.
        public var file: String
        public var bytes: Int
        public var checksum: UInt64
        /// The shard's `stateDigest()` when the checkpoint was taken.
        public var digest: UInt64
    }

    /// A collective result, encoded.
    public struct Collective: Sendable, Equatable {
        public var name: String
        public var value: [UInt8]
    }

    /// The combined digest of the checkpointed state (`StateDigest.combine` of the shards').
    public var digest: UInt64 { StateDigest.combine(shards.map(\.digest)) }

    /// The shard ids, in increasing order.
    public var shardIDs: [ShardID] { shards.map(\.shard) }

    static let header = "spindle-runner checkpoint 1"

    /// The manifest as text.
    func encode() -> String {
        var lines = [CheckpointManifest.header, "tick \(tick)", "directory \(directory)"]
        switch placement {
        case .hashed(let v): lines.append("placement hashed \(v)")
        case .ranges(let n): lines.append("placement ranges \(n)")
        }
        for e in shards {
            lines.append("shard \(e.shard.value) \(e.file) \(e.bytes) \(hex(e.checksum)) \(hex(e.digest))")
        }
        for c in collectives {
            lines.append("collective \(hexBytes(Array(c.name.utf8))) \(c.value.isEmpty ? "-" : hexBytes(c.value))")
        }
        let body = lines.map { $0 + "\n" }.joined()
        return body + "end \(hex(Checksum.of(Array(body.utf8))))\n"
    }

    /// Parses a manifest's text; errors name `file` and the line.
    static func decode(_ text: [UInt8], file: String) throws(RunnerError) -> CheckpointManifest {
        func corrupt(_ line: Int, _ why: String) -> RunnerError {
            .checkpointCorrupt(file: file, reason: line > 0 ? "line \(line): \(why)" : why)
        }
        guard let endRange = lastLine(of: text) else { throw corrupt(0, "empty or not ending with a newline") }
        let body = Array(text[0..<endRange.lowerBound])
        let endLine = String(decoding: text[endRange], as: UTF8.self)
        let endFields = endLine.split(separator: " ", omittingEmptySubsequences: false)
        guard endFields.count == 2, endFields[0] == "end", let sum = UInt64(endFields[1], radix: 16) else {
            throw corrupt(0, "the last line is not \"end <checksum>\" (the file is truncated?)")
        }
        guard sum == Checksum.of(body) else { throw corrupt(0, "the checksum does not match the contents") }
        let lines = String(decoding: body, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        var tick: UInt64?
        var directory: String?
        var placement: PlacementStrategy?
        var shards: [Entry] = []
        var collectives: [Collective] = []
        for (i, raw) in lines.enumerated() {
            let n = i + 1
            let f = raw.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            if n == 1 {
                guard raw == CheckpointManifest.header else { throw corrupt(n, "not a runner checkpoint manifest (\"\(raw.prefix(40))\")") }
                continue
            }
            switch f.first {
            case "tick":
                guard f.count == 2, let t = UInt64(f[1]) else { throw corrupt(n, "bad tick") }
                tick = t
            case "directory":
                guard f.count == 2, isPlainName(f[1]) else { throw corrupt(n, "bad directory") }
                directory = f[1]
            case "placement":
                guard f.count == 3, let v = UInt64(f[2]), v >= 1 else { throw corrupt(n, "bad placement") }
                switch f[1] {
                case "hashed":
                    guard v <= 1 << 20 else { throw corrupt(n, "bad placement") }
                    placement = .hashed(virtualNodes: Int(v))
                case "ranges": placement = .ranges(keyCount: v)
                default: throw corrupt(n, "unknown placement \(f[1])")
                }
            case "shard":
                guard f.count == 6, let id = UInt64(f[1]), isPlainName(f[2]), let bytes = Int(f[3]), bytes >= 0,
                      let checksum = UInt64(f[4], radix: 16), let digest = UInt64(f[5], radix: 16) else {
                    throw corrupt(n, "bad shard entry")
                }
                shards.append(Entry(shard: ShardID(id), file: f[2], bytes: bytes, checksum: checksum, digest: digest))
            case "collective":
                guard f.count == 3, let name = bytesFromHex(f[1]),
                      let value = f[2] == "-" ? [] : bytesFromHex(f[2]) else { throw corrupt(n, "bad collective") }
                collectives.append(Collective(name: String(decoding: name, as: UTF8.self), value: value))
            default:
                throw corrupt(n, "unknown field \"\(f.first ?? "")\"")
            }
        }
        guard let tick else { throw corrupt(0, "no tick") }
        guard let directory else { throw corrupt(0, "no directory") }
        guard let placement else { throw corrupt(0, "no placement") }
        guard !shards.isEmpty else { throw corrupt(0, "no shards") }
        let ids = shards.map(\.shard)
        guard ids == ids.sorted(), Set(ids).count == ids.count else { throw corrupt(0, "shards not in increasing order or repeated") }
        return CheckpointManifest(tick: tick, placement: placement, shards: shards, collectives: collectives,
                                  directory: directory)
    }

    private static func lastLine(of text: [UInt8]) -> Range<Int>? {
        guard let last = text.last, last == UInt8(ascii: "\n"), text.count >= 2 else { return nil }
        var start = text.count - 2
        while start >= 0 && text[start] != UInt8(ascii: "\n") { start -= 1 }
        return (start + 1)..<(text.count - 1)
    }

    /// A file or directory name without separators or dots-only names.
    static func isPlainName(_ s: String) -> Bool {
        !s.isEmpty && s != "." && s != ".." && !s.contains("/") && s.utf8.allSatisfy { $0 > 32 && $0 < 127 }
    }
}

func hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

func hexBytes(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

func bytesFromHex(_ s: String) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
        guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}

/// A fast checksum of bytes (eight at a time) for detecting damaged checkpoint files.
enum Checksum {
    static func of(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { of($0) }
    }

    static func of(_ raw: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(raw.count)
        var i = 0
        let n = raw.count
        while i + 8 <= n {
            let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            h = (h ^ w) &* 0x0000_0100_0000_01B3
            h ^= h >> 31
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(raw[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* 0x0000_0100_0000_01B3
        return StableHash.mix(h)
    }
}
