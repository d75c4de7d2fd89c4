import Crypto
import Testing
@testable import SpindleTCP

/// The Noise implementation against the published test vector for our exact pattern.
///
/// The vector is the `Noise_NNpsk0_25519_AESGCM_SHA256` entry of the cacophony test
/// vectors (the reference vector set of the Noise protocol, as shipped with several Noise
/// libraries): fixed ephemeral keys, prologue and psk; two handshake messages and four
/// transport messages alternating from the initiator.
@Suite("Noise NNpsk0 test vector")
struct NoiseVectorTests {
    static let prologue = hex("4a6f686e2047616c74")
    static let psk = hex("54686973206973206d7920417573747269616e20706572737065637469766521")
    static let initiatorEphemeral = hex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
    static let responderEphemeral = hex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
    static let handshakeHash = hex("9f3b1f9afd7767767b5b9d1069844a6154fdbdcc36dfb3e31c0fffc5c973d530")
    static let messages: [(payload: [UInt8], ciphertext: [UInt8])] = [
        (hex("4c756477696720766f6e204d69736573"),
         hex("ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79447c37a89fc17813788d30df2d59501d6066f5f8aecc3406bbd9829f2d24a531b1")),
        (hex("4d757272617920526f746862617264"),
         hex("95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088432f29d79368ef9de4e1ae7a362fb05bf0ad668e026bf5714554497b3a720461")),
        (hex("462e20412e20486179656b"), hex("7c01e898a6201f36aecee532e29cd0b7f8ffa29d3366ad0dce39a6")),
        (hex("4361726c204d656e676572"), hex("a9ff535aace3db6a1da1a7fb00fe2de2622bb373abad9fb42c00e0")),
        (hex("4a65616e2d426170746973746520536179"), hex("6cfc49a3e65472edc2d0152abe5ce950170a8a47c959f30bd48b5f0aacf29adbfd")),
        (hex("457567656e2042f6686d20766f6e2042617765726b"),
         hex("9bc86e6d974ed21ba04604a94aa68de21677eb409ead070c0cd569b069ee19ba142aa4c1a9")),
    ]

    @Test("both sides reproduce every message byte for byte and the handshake hash")
    func vector() throws {
        var initiator = NoiseNNpsk0(role: .initiator, prologue: Self.prologue, psk: Self.psk,
                                    ephemeral: try .init(rawRepresentation: Self.initiatorEphemeral))
        var responder = NoiseNNpsk0(role: .responder, prologue: Self.prologue, psk: Self.psk,
                                    ephemeral: try .init(rawRepresentation: Self.responderEphemeral))

        let m1 = try initiator.writeFirst(payload: Self.messages[0].payload)
        #expect(m1 == Self.messages[0].ciphertext)
        #expect(try responder.readFirst(m1) == Self.messages[0].payload)

        let m2 = try responder.writeSecond(payload: Self.messages[1].payload)
        #expect(m2 == Self.messages[1].ciphertext)
        #expect(try initiator.readSecond(m2) == Self.messages[1].payload)

        #expect(initiator.handshakeHash == Self.handshakeHash)
        #expect(responder.handshakeHash == Self.handshakeHash)

        var (iSend, iReceive) = initiator.split()
        var (rSend, rReceive) = responder.split()
        for (i, message) in Self.messages.enumerated().dropFirst(2) {
            let fromInitiator = i % 2 == 0
            let sealed = fromInitiator ? try iSend.encrypt(ad: [], message.payload)
                                       : try rSend.encrypt(ad: [], message.payload)
            #expect(sealed == message.ciphertext, "transport message \(i)")
            let opened = fromInitiator ? try rReceive.decrypt(ad: [], sealed) : try iReceive.decrypt(ad: [], sealed)
            #expect(opened == message.payload)
        }
    }

    @Test("the pointer-based record sealing matches the vector's transport messages")
    func recordSealing() throws {
        var initiator = NoiseNNpsk0(role: .initiator, prologue: Self.prologue, psk: Self.psk,
                                    ephemeral: try .init(rawRepresentation: Self.initiatorEphemeral))
        var responder = NoiseNNpsk0(role: .responder, prologue: Self.prologue, psk: Self.psk,
                                    ephemeral: try .init(rawRepresentation: Self.responderEphemeral))
        _ = try responder.readFirst(try initiator.writeFirst(payload: []))
        _ = try initiator.readSecond(try responder.writeSecond(payload: []))
        var (iSend, _) = initiator.split()
        var (_, rReceive) = responder.split()
        let payload = Array("records and messages share one cipher".utf8)
        var out = [UInt8](repeating: 0, count: payload.count + 16)
        try payload.withUnsafeBytes { p in try out.withUnsafeMutableBytes { o in try iSend.seal(p, into: o.baseAddress!) } }
        var back = [UInt8](repeating: 0, count: payload.count)
        let n = try out.withUnsafeBytes { s in try back.withUnsafeMutableBytes { b in try rReceive.open(s, into: b.baseAddress!) } }
        #expect(n == payload.count && back == payload)
    }
}

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.makeIterator()
    while let a = it.next(), let b = it.next() {
        out.append(UInt8(String([a, b]), radix: 16)!)
    }
    return out
}
