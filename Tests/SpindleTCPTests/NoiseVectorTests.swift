import Crypto
import Testing
@testable import SpindleTCP

/// The Noise implementation against the published test vector for our exact pattern.
///
/// The vector is the `Noise_NNpsk0_25519_ChaChaPoly_SHA256` entry of the cacophony test
/// vectors (the reference vector set of the Noise protocol, as shipped with several Noise
/// libraries): fixed ephemeral keys, prologue and psk; two handshake messages and four
/// transport messages alternating from the initiator.
@Suite("Noise NNpsk0 test vector")
struct NoiseVectorTests {
    static let prologue = hex("4a6f686e2047616c74")
    static let psk = hex("54686973206973206d7920417573747269616e20706572737065637469766521")
    static let initiatorEphemeral = hex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
    static let responderEphemeral = hex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
    static let handshakeHash = hex("f4d03dc34495c95729ea6de9e1b59004b59733102488b3e24bc441e0be208eaf")
    static let messages: [(payload: [UInt8], ciphertext: [UInt8])] = [
        (hex("4c756477696720766f6e204d69736573"),
         hex("ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c794479b962b8aff8485742ac32f905ba45369e2465fb59e138a93d67a0d1266b6a54")),
        (hex("4d757272617920526f746862617264"),
         hex("95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d6062704d5a9c422a8e834423f8c1feada7e8d0d910a1a2cd030fb584221e3")),
        (hex("462e20412e20486179656b"), hex("e632c3763d7669067383433197a3baddf146e9e70ad4b4e9e59e0f")),
        (hex("4361726c204d656e676572"), hex("64c6bee32ea91c8474bb4c21d7a700109ad45af77b29764ba5eb1e")),
        (hex("4a65616e2d426170746973746520536179"), hex("e2fa0bed0603b62d3ccac2ecabbf3fe33f3e86514909b323361626266cb2471cc8")),
        (hex("457567656e2042f6686d20766f6e2042617765726b"),
         hex("0c01dc9cec1fe4ddd692e8dd32188aa351088dc91183639a53b57aa4692b5ebdef8b8ca111")),
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
