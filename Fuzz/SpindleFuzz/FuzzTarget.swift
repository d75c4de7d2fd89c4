import SpindleKernel
import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

/// One parser of untrusted bytes.
enum FuzzTarget: String, CaseIterable {
    /// The frame decoder (every route agrees; decoded envelopes round-trip).
    case frames
    /// The SpindleTCP handshake, both roles, keyed and plain.
    case handshake
    /// The record layer (splitting never changes the outcome; sealed input opens back).
    case records
    /// A reliable-link core fed arbitrary control and data frames.
    case reliable

    func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .frames: KernelFuzzing.frameDecoder(data)
        case .handshake: TCPFuzzing.handshake(data)
        case .records: TCPFuzzing.records(data)
        case .reliable: KernelFuzzing.reliableControl(data)
        }
    }
}

/// The seed corpus: valid inputs of each target, from which the fuzzer mutates.
enum FuzzSeeds {
    struct WriteError: Error, CustomStringConvertible { var description: String }

    static func write(to directory: String) throws {
        for (target, seeds) in [(FuzzTarget.frames, KernelFuzzing.frameSeeds()), (.reliable, KernelFuzzing.reliableSeeds()),
                                (.handshake, TCPFuzzing.handshakeSeeds()), (.records, TCPFuzzing.recordSeeds())] {
            let dir = directory + "/" + target.rawValue
            mkdir(dir, 0o755)
            for (i, seed) in seeds.enumerated() {
                let path = dir + "/seed-\(i)"
                guard let f = fopen(path, "wb") else { throw WriteError(description: "cannot create \(path)") }
                defer { fclose(f) }
                guard seed.withUnsafeBytes({ fwrite($0.baseAddress, 1, $0.count, f) }) == seed.count else {
                    throw WriteError(description: "cannot write \(path)")
                }
            }
        }
    }

    static func read(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return out
    }
}

/// Writes a line to standard error.
func complain(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
