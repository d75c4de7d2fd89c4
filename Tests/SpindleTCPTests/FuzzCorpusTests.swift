import Foundation
import SpindleKernel
import Testing
@testable import SpindleTCP

/// Every seed and every saved crash input of the fuzz targets (Fuzz/Corpus, Fuzz/Regressions)
/// runs through its target in the ordinary test build: a fixed crash stays fixed.
@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    /// The repository's Fuzz directory, found from this file's path.
    static let fuzzDirectory: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Fuzz").path
    }()

    static func inputs(_ target: String) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        for sub in ["Corpus", "Regressions"] {
            let dir = "\(fuzzDirectory)/\(sub)/\(target)"
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            for name in names.sorted() where !name.hasPrefix(".") {
                if let data = FileManager.default.contents(atPath: "\(dir)/\(name)") { out.append(("\(sub)/\(target)/\(name)", Array(data))) }
            }
        }
        return out
    }

    @Test("every corpus and regression input runs clean", arguments: ["frames", "handshake", "records", "reliable"])
    func corpus(target: String) {
        let inputs = Self.inputs(target)
        #expect(inputs.count >= 3, "the seed corpus of \(target) is missing from \(Self.fuzzDirectory)")
        for (_, bytes) in inputs {
            bytes.withUnsafeBytes { raw in
                switch target {
                case "frames": KernelFuzzing.frameDecoder(raw)
                case "handshake": TCPFuzzing.handshake(raw)
                case "records": TCPFuzzing.records(raw)
                default: KernelFuzzing.reliableControl(raw)
                }
            }
        }
    }

    @Test("the committed seeds are the generator's, and reach past the handshake")
    func seedsAreCurrentAndDeep() throws {
        let committed = Self.inputs("handshake").filter { $0.0.hasPrefix("Corpus/") }.map(\.1)
        #expect(committed == TCPFuzzing.handshakeSeeds(), "regenerate with `spindle-fuzz --write-seeds Fuzz/Corpus`")
        // The first seed is a whole keyed opening plus confirmation: the fuzzed acceptor establishes.
        var acceptor = TCPHandshake(role: .acceptor, key: TCPFuzzing.key, localNode: nil, ephemeral: TCPFuzzing.ephemeral(),
                                    now: .zero, timeout: .seconds(1))
        let actions = committed[0].withUnsafeBytes { acceptor.receive($0) }
        #expect(actions.contains { if case .established = $0 { return true } else { return false } })
    }
}
