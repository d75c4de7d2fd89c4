import SpindleActors
import SpindleKernel
import SpindleSupport
import Testing

private struct Inner: Codable, Equatable { var a: Int8; var b: [String: Double]; var c: UInt64? }
private enum Shape: Codable, Equatable {
    case circle(radius: Double)
    case polygon([Int])
    case empty
}
private struct Everything: Codable, Equatable {
    var i: Int = -5
    var u: UInt32 = 70_000
    var f: Float = 1.5
    var d: Double = -2.25
    var s = "héllo"
    var bytes: [UInt8] = [0, 255, 7]
    var optionalNil: Int? = nil
    var optionalSome: String? = "x"
    var nested = Inner(a: -128, b: ["k": 1.0], c: nil)
    var list = [Inner(a: 1, b: [:], c: 9)]
    var shapes: [Shape] = [.circle(radius: 2), .polygon([1, 2, 3]), .empty]
    var matrix: [[Int]] = [[1], [], [2, 3]]
    var optionals: [Int?] = [1, nil, 3]
    var big = Int128(-1) << 100
    var set: Set<Int> = [4]
}

@Suite("Compact binary Codable encoding")
struct CompactCodecTests {
    @Test("values of many shapes round-trip")
    func roundTrip() throws {
        let value = Everything()
        let bytes = try CompactEncoder().encode(value)
        #expect(try CompactDecoder().decode(Everything.self, from: bytes) == value)
        #expect(try CompactDecoder().decode(Int?.self, from: try CompactEncoder().encode(Int?.none)) == nil)
        #expect(try CompactDecoder().decode([UInt8].self, from: try CompactEncoder().encode([UInt8](repeating: 1, count: 64))).count == 64)
    }

    @Test("small values stay small")
    func compactness() throws {
        #expect(try CompactEncoder().encode(41).count == 2)
        #expect(try CompactEncoder().encode(-1).count == 2)
        #expect(try CompactEncoder().encode([UInt8](repeating: 0, count: 64)).count == 65)
        struct Count: Codable { var count: Int }
        #expect(try CompactEncoder().encode(Count(count: 41)).count == 10)
    }

    @Test("every truncation and corruption of an encoding fails with DecodingError, never a trap")
    func totalDecoder() throws {
        let bytes = try CompactEncoder().encode(Everything())
        for n in 0..<bytes.count {
            #expect(throws: DecodingError.self) { try CompactDecoder().decode(Everything.self, from: Array(bytes[..<n])) }
        }
        var rng = SplitMix64(seed: 42)
        for _ in 0..<2_000 {
            var b = bytes
            let i = Int(rng.next() % UInt64(b.count))
            b[i] = UInt8(truncatingIfNeeded: rng.next())
            _ = try? CompactDecoder().decode(Everything.self, from: b)
        }
        // Random bytes decode as anything or fail, and must not trap.
        for _ in 0..<2_000 {
            let b = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? CompactDecoder().decode(Everything.self, from: b)
            _ = try? CompactDecoder().decode([String: [Int?]].self, from: b)
        }
    }

    @Test("nesting beyond the depth limit is refused")
    func depthLimit() throws {
        indirect enum Chain: Codable { case end, link(Chain) }
        var c = Chain.end
        for _ in 0..<40 { c = .link(c) }
        let bytes = try CompactEncoder().encode(c)
        _ = try CompactDecoder().decode(Chain.self, from: bytes)
        #expect(throws: DecodingError.self) { try CompactDecoder(maximumDepth: 20).decode(Chain.self, from: bytes) }
    }
}
