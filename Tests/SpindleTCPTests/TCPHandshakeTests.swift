import SpindleKernel
import Testing
@testable import SpindleTCP

/// The handshake state machine, driven without sockets on a ManualClock.
@Suite("TCP handshake state machine")
struct TCPHandshakeTests {
    static let keyA = try! ClusterKey(bytes: Array(repeating: 0xA5, count: 32))
    static let keyB = try! ClusterKey(bytes: Array(repeating: 0x5A, count: 32))

    /// Outcome of one side after a run.
    struct Outcome {
        var established: (authenticated: Bool, leftover: [UInt8])?
        var failure: TCPHandshakeError?
    }

    /// Runs two handshakes against each other, delivering bytes in chunks of `chunk`.
    static func converse(_ a: inout TCPHandshake, _ b: inout TCPHandshake, chunk: Int = .max) -> (Outcome, Outcome) {
        var toB: [UInt8] = []
        var toA: [UInt8] = []
        var outA = Outcome(), outB = Outcome()
        func apply(_ actions: [TCPHandshake.Action], out: inout Outcome, wire: inout [UInt8]) {
            for action in actions {
                switch action {
                case .send(let bytes): wire += bytes
                case .established(let auth, let leftover): out.established = (auth, leftover)
                case .fail(let e): out.failure = e
                }
            }
        }
        apply(a.start(), out: &outA, wire: &toB)
        apply(b.start(), out: &outB, wire: &toA)
        var rounds = 0
        while (!toA.isEmpty || !toB.isEmpty) && rounds < 10_000 {
            rounds += 1
            if !toB.isEmpty {
                let piece = Array(toB.prefix(chunk)); toB.removeFirst(piece.count)
                let actions = piece.withUnsafeBytes { b.receive($0) }
                apply(actions, out: &outB, wire: &toA)
            }
            if !toA.isEmpty {
                let piece = Array(toA.prefix(chunk)); toA.removeFirst(piece.count)
                let actions = piece.withUnsafeBytes { a.receive($0) }
                apply(actions, out: &outA, wire: &toB)
            }
        }
        return (outA, outB)
    }

    static func pair(_ ka: ClusterKey?, _ kb: ClusterKey?, clock: ManualClock = ManualClock())
        -> (TCPHandshake, TCPHandshake) {
        (TCPHandshake(role: .initiator, key: ka, nonce: Array(repeating: 1, count: 32), now: clock.now(), timeout: .seconds(5)),
         TCPHandshake(role: .acceptor, key: kb, nonce: Array(repeating: 2, count: 32), now: clock.now(), timeout: .seconds(5)))
    }

    @Test("without keys both sides establish unauthenticated after the HELLO exchange",
          arguments: [1, 3, 7, 40, Int.max])
    func noKeys(chunk: Int) {
        var (a, b) = Self.pair(nil, nil)
        let (oa, ob) = Self.converse(&a, &b, chunk: chunk)
        #expect(oa.failure == nil && ob.failure == nil)
        #expect(oa.established?.authenticated == false)
        #expect(ob.established?.authenticated == false)
        #expect(a.phase == .established && b.phase == .established)
    }

    @Test("the same key authenticates both sides under any split of the bytes",
          arguments: [1, 5, 31, 39, 41, Int.max])
    func sameKey(chunk: Int) {
        var (a, b) = Self.pair(Self.keyA, Self.keyA)
        let (oa, ob) = Self.converse(&a, &b, chunk: chunk)
        #expect(oa.failure == nil && ob.failure == nil)
        #expect(oa.established?.authenticated == true)
        #expect(ob.established?.authenticated == true)
        #expect(oa.established?.leftover == [] && ob.established?.leftover == [])
    }

    @Test("different keys fail on both sides with a proof mismatch at byte 40")
    func wrongKey() {
        var (a, b) = Self.pair(Self.keyA, Self.keyB)
        let (oa, ob) = Self.converse(&a, &b)
        #expect(oa.established == nil && ob.established == nil)
        #expect(oa.failure?.kind == .proofMismatch(offset: 40))
        #expect(ob.failure?.kind == .proofMismatch(offset: 40))
        #expect(oa.failure?.isAuthenticationFailure == true)
        #expect(ob.failure?.description.contains("bytes 40..<72") == true)
    }

    @Test("a missing key on either side fails both, each with its own typed reason")
    func missingKey() {
        var (a, b) = Self.pair(nil, Self.keyA)
        let (oa, ob) = Self.converse(&a, &b)
        #expect(oa.failure?.kind == .localHasNoKey)
        #expect(ob.failure?.kind == .peerHasNoKey)
        #expect(oa.failure?.isAuthenticationFailure == true)
        #expect(ob.failure?.isAuthenticationFailure == true)

        var (c, d) = Self.pair(Self.keyA, nil)
        let (oc, od) = Self.converse(&c, &d)
        #expect(oc.failure?.kind == .peerHasNoKey)
        #expect(od.failure?.kind == .localHasNoKey)
    }

    @Test("reflecting the acceptor's own proof back to it fails")
    func reflectedProof() {
        let clock = ManualClock()
        var acceptor = TCPHandshake(role: .acceptor, key: Self.keyA, nonce: Array(repeating: 9, count: 32),
                                    now: clock.now(), timeout: .seconds(5))
        _ = acceptor.start()
        // The attacker has no key: it sends a HELLO claiming to authenticate.
        let attackerNonce = Array(repeating: UInt8(7), count: 32)
        let hello = TCPHandshake.hello(role: .initiator, authenticate: true, nonce: attackerNonce)
        let actions = hello.withUnsafeBytes { acceptor.receive($0) }
        guard case .send(let acceptorProof)? = actions.first else {
            Issue.record("acceptor did not send its proof: \(actions)")
            return
        }
        #expect(acceptorProof.count == TCPHandshake.proofSize)
        let reflected = acceptorProof.withUnsafeBytes { acceptor.receive($0) }
        #expect(reflected == [.fail(TCPHandshakeError(.proofMismatch(offset: 40)).withLocalKey())])
        #expect(acceptor.phase == .failed)
    }

    @Test("a proof recorded in an earlier session does not pass with a fresh nonce")
    func replayedProof() {
        let initiatorNonce = Array(repeating: UInt8(3), count: 32)
        let old = TCPHandshake.proof(key: Self.keyA, prover: .initiator, initiatorNonce: initiatorNonce,
                                     acceptorNonce: Array(repeating: 4, count: 32))
        var acceptor = TCPHandshake(role: .acceptor, key: Self.keyA, nonce: Array(repeating: 5, count: 32),
                                    now: .zero, timeout: .seconds(5))
        let hello = TCPHandshake.hello(role: .initiator, authenticate: true, nonce: initiatorNonce)
        _ = hello.withUnsafeBytes { acceptor.receive($0) }
        let result = old.withUnsafeBytes { acceptor.receive($0) }
        #expect(result.count == 1)
        if case .fail(let e)? = result.first { #expect(e.kind == .proofMismatch(offset: 40)) } else {
            Issue.record("replayed proof was accepted: \(result)")
        }
    }

    @Test("garbage is rejected at its first wrong byte, naming the offset")
    func garbage() {
        var h = TCPHandshake(role: .acceptor, key: nil, nonce: [], now: .zero, timeout: .seconds(1))
        let ok = Array("SP".utf8).withUnsafeBytes { h.receive($0) }
        #expect(ok.isEmpty)
        let bad = Array("XX".utf8).withUnsafeBytes { h.receive($0) }
        #expect(bad == [.fail(TCPHandshakeError(.badMagic(offset: 2, byte: 0x58)))])
        if case .fail(let e)? = bad.first {
            #expect(!e.isAuthenticationFailure)
            #expect(e.description.contains("byte 2"))
        }
        // Later bytes are ignored once failed.
        #expect(Array("more".utf8).withUnsafeBytes { h.receive($0) }.isEmpty)
    }

    @Test("garbage at a side with a key counts as an authentication failure")
    func garbageWithKey() {
        var h = TCPHandshake(role: .acceptor, key: Self.keyA, nonce: [], now: .zero, timeout: .seconds(1))
        let bad = Array("GET / HTTP/1.1\r\n".utf8).withUnsafeBytes { h.receive($0) }
        guard case .fail(let e)? = bad.first else { Issue.record("no failure: \(bad)"); return }
        #expect(e.kind == .badMagic(offset: 0, byte: UInt8(ascii: "G")))
        #expect(e.isAuthenticationFailure)
    }

    @Test("a wrong version or a role clash is rejected at its byte")
    func versionAndRole() {
        var h = TCPHandshake(role: .acceptor, key: nil, nonce: [], now: .zero, timeout: .seconds(1))
        var hello = TCPHandshake.hello(role: .initiator, authenticate: false, nonce: [])
        hello[4] = 9
        let r = hello.withUnsafeBytes { h.receive($0) }
        #expect(r == [.fail(TCPHandshakeError(.unsupportedVersion(9, offset: 4)))])

        var i = TCPHandshake(role: .initiator, key: nil, nonce: [], now: .zero, timeout: .seconds(1))
        let same = TCPHandshake.hello(role: .initiator, authenticate: false, nonce: [])
        let s = same.withUnsafeBytes { i.receive($0) }
        #expect(s == [.fail(TCPHandshakeError(.badRole(1, offset: 5, local: .initiator)))])
    }

    @Test("bytes after the handshake are handed on as the start of the frame stream")
    func leftover() {
        var h = TCPHandshake(role: .initiator, key: Self.keyA, nonce: Array(repeating: 1, count: 32),
                             now: .zero, timeout: .seconds(1))
        let acceptorNonce = Array(repeating: UInt8(2), count: 32)
        var bytes = TCPHandshake.hello(role: .acceptor, authenticate: true, nonce: acceptorNonce)
        bytes += TCPHandshake.proof(key: Self.keyA, prover: .acceptor,
                                    initiatorNonce: Array(repeating: 1, count: 32), acceptorNonce: acceptorNonce)
        bytes += [0, 0, 0, 9, 42]
        let actions = bytes.withUnsafeBytes { h.receive($0) }
        #expect(actions.count == 2)
        #expect(actions.last == .established(authenticated: true, leftover: [0, 0, 0, 9, 42]))
    }

    @Test("the deadline fails the handshake on the manual clock, not before")
    func timeout() {
        let clock = ManualClock()
        var h = TCPHandshake(role: .initiator, key: Self.keyA, nonce: [], now: clock.now(), timeout: .seconds(2))
        clock.advance(by: .milliseconds(1999))
        #expect(h.tick(now: clock.now()).isEmpty)
        clock.advance(by: .milliseconds(1))
        let r = h.tick(now: clock.now())
        guard case .fail(let e)? = r.first else { Issue.record("no timeout: \(r)"); return }
        #expect(e.kind == .timedOut(after: .seconds(2), waitingFor: "the peer's HELLO"))
        #expect(e.isAuthenticationFailure)
        #expect(h.tick(now: clock.now()).isEmpty)
    }

    @Test("the peer closing mid-handshake fails it with the byte count seen")
    func peerClosed() {
        var h = TCPHandshake(role: .acceptor, key: nil, nonce: [], now: .zero, timeout: .seconds(1))
        _ = Array("SPTC".utf8).withUnsafeBytes { h.receive($0) }
        #expect(h.peerClosed() == [.fail(TCPHandshakeError(.peerClosed(afterBytes: 4)))])
    }

    @Test("cluster keys reject short byte strings and derive equal keys from equal passphrases")
    func clusterKeys() throws {
        #expect(throws: ClusterKeyError(byteCount: 5)) { try ClusterKey(bytes: [1, 2, 3, 4, 5]) }
        let p1 = ClusterKey(passphrase: "correct horse"), p2 = ClusterKey(passphrase: "correct horse")
        #expect(p1.bytes == p2.bytes)
        #expect(ClusterKey(passphrase: "other").bytes != p1.bytes)
        #expect(ClusterKey.random().description == "ClusterKey(256 bits, redacted)")
        #expect(ClusterKey.random().bytes != ClusterKey.random().bytes)
    }
}

extension TCPHandshakeError {
    func withLocalKey() -> TCPHandshakeError {
        var e = self
        e.localRequiresAuthentication = true
        return e
    }
}
