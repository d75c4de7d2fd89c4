import Crypto
import SpindleKernel

/// Entry points for the fuzz targets (Fuzz/): the handshake and the record layer fed
/// untrusted bytes. Parsers must never trap; a violated property stops the process
/// (`preconditionFailure`), which is what a fuzzer reports. Package-visible only: not API.
package enum TCPFuzzing {
    static let key = try! ClusterKey(bytes: Array(repeating: 0x42, count: 32))
    /// A fixed ephemeral key, so runs are reproducible.
    static func ephemeral() -> Curve25519.KeyAgreement.PrivateKey {
        try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Array(repeating: 0x24, count: 32))
    }

    /// Both roles of the handshake, keyed and plain, fed the input in pieces (sizes taken
    /// from the input itself), then a close and a late tick.
    package static func handshake(_ data: UnsafeRawBufferPointer) {
        for role in [TCPHandshake.Role.acceptor, .initiator] {
            for key in [key, nil] as [ClusterKey?] {
                var hs = TCPHandshake(role: role, key: key, localNode: nil, ephemeral: ephemeral(),
                                      now: .zero, timeout: .seconds(1))
                _ = hs.start()
                var at = 0
                var established = false
                while at < data.count && !established && hs.phase != .failed {
                    let n = max(1, Int(data[at]) % 97)
                    let piece = UnsafeRawBufferPointer(rebasing: data[at..<min(data.count, at + n)])
                    at += piece.count
                    for action in hs.receive(piece) {
                        if case .established(let session) = action {
                            established = true
                            guard session.leftoverOffset <= data.count else {
                                preconditionFailure("handshake: leftover offset beyond the input")
                            }
                        }
                    }
                }
                _ = hs.peerClosed()
                _ = hs.tick(now: .zero + .seconds(2))
            }
        }
    }

    /// The record opener over arbitrary bytes, whole and byte by byte: the same plaintext
    /// comes out and the same error (if any) is reported at the same offset.
    package static func records(_ data: UnsafeRawBufferPointer) {
        func run(chunk: Int) -> ([UInt8], RecordError?) {
            let opener = RecordOpener(cipher: NoiseCipherState(key: Array(repeating: 7, count: 32)), streamOffset: 90)
            var plain: [UInt8] = []
            var at = 0
            while at < data.count {
                let piece = UnsafeRawBufferPointer(rebasing: data[at..<min(data.count, at + chunk)])
                at += piece.count
                do {
                    try opener.open(piece) { bytes in
                        plain.append(contentsOf: bytes)
                        return true
                    }
                } catch {
                    return (plain, error)
                }
            }
            return (plain, opener.truncation)
        }
        let whole = run(chunk: max(1, data.count))
        let small = run(chunk: 3)
        guard whole.0 == small.0, whole.1 == small.1 else {
            preconditionFailure("record opener: splitting the input changed the outcome")
        }
        // Sealed records of the input open back to it.
        let sealer = RecordSealer(cipher: NoiseCipherState(key: Array(repeating: 9, count: 32)))
        var sealed = [UInt8](repeating: 0, count: sealer.maximumOutputSize(forInputCount: data.count) + 1)
        let n = sealed.withUnsafeMutableBytes { out in (try? sealer.transform(data, into: out.baseAddress!)) ?? -1 }
        guard n >= 0 else { preconditionFailure("record sealer failed") }
        let opener = RecordOpener(cipher: NoiseCipherState(key: Array(repeating: 9, count: 32)), streamOffset: 0)
        var back: [UInt8] = []
        do {
            try sealed[..<n].withUnsafeBytes { bytes in
                try opener.open(bytes) { back.append(contentsOf: $0); return true }
            }
        } catch {
            preconditionFailure("record opener refused records the sealer made: \(error)")
        }
        guard back.elementsEqual(data) else { preconditionFailure("records did not round-trip") }
    }
}

extension TCPFuzzing {
    /// Runs a keyed handshake between an initiator and an acceptor with the given ephemeral
    /// keys; returns what each sent.
    static func conversation(initiator ei: UInt8, acceptor ea: UInt8) -> (initiator: [UInt8], acceptor: [UInt8]) {
        func eph(_ b: UInt8) -> Curve25519.KeyAgreement.PrivateKey {
            try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Array(repeating: b, count: 32))
        }
        var i = TCPHandshake(role: .initiator, key: key, localNode: NodeID(raw: RawID128(high: 1, low: 1)),
                             ephemeral: eph(ei), now: .zero, timeout: .seconds(1))
        var a = TCPHandshake(role: .acceptor, key: key, localNode: NodeID(raw: RawID128(high: 2, low: 2)),
                             ephemeral: eph(ea), now: .zero, timeout: .seconds(1))
        var fromI: [UInt8] = [], fromA: [UInt8] = []
        func sent(_ actions: [TCPHandshake.Action]) -> [UInt8] {
            actions.flatMap { if case .send(let b) = $0 { return b } else { return [] } }
        }
        fromI += sent(i.start())
        fromA += fromI.withUnsafeBytes { sent(a.receive($0)) }
        let confirmation = fromA.withUnsafeBytes { sent(i.receive($0)) }
        fromI += confirmation
        _ = confirmation.withUnsafeBytes { a.receive($0) }
        return (fromI, fromA)
    }

    /// Valid handshakes as each fuzzed role sees them (its ephemeral key is `ephemeral()`).
    package static func handshakeSeeds() -> [[UInt8]] {
        let toAcceptor = conversation(initiator: 0x55, acceptor: 0x24).initiator
        let toInitiator = conversation(initiator: 0x24, acceptor: 0x66).acceptor
        let plainOpening = TCPHandshake.preamble(role: .initiator, mode: .plain) + TCPHandshake.identity(nil)
        let plainReply = TCPHandshake.preamble(role: .acceptor, mode: .plain) + TCPHandshake.identity(nil)
        return [toAcceptor, toInitiator, plainOpening, plainReply, toAcceptor + [0x10, 0x00]]
    }

    /// Records sealed with the key the fuzzed opener uses.
    package static func recordSeeds() -> [[UInt8]] {
        let sealer = RecordSealer(cipher: NoiseCipherState(key: Array(repeating: 7, count: 32)))
        func seal(_ plaintext: [UInt8]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: sealer.maximumOutputSize(forInputCount: plaintext.count))
            let n = plaintext.withUnsafeBytes { p in out.withUnsafeMutableBytes { try! sealer.transform(p, into: $0.baseAddress!) } }
            return Array(out[..<n])
        }
        let frame = try! FrameEncoder().encode(Envelope(protocolTag: .application, kind: 1, payload: Array("records".utf8)))
        return [seal(frame), seal(frame) + seal(frame + frame), seal(Array(repeating: 1, count: 20_000))]
    }
}
