import Crypto
import SpindleKernel
import Testing
@testable import SpindleTCP

/// The handshake state machine, driven without sockets on a ManualClock.
@Suite("TCP handshake state machine")
struct TCPHandshakeTests {
    static let keyA = try! ClusterKey(bytes: Array(repeating: 0xA5, count: 32))
    static let keyB = try! ClusterKey(bytes: Array(repeating: 0x5A, count: 32))
    static let nodeA = NodeID(raw: RawID128(high: 0xA, low: 1))
    static let nodeB = NodeID(raw: RawID128(high: 0xB, low: 2))

    /// Outcome of one side after a run.
    struct Outcome {
        var session: TCPHandshake.Session?
        var failure: TCPHandshakeError?
        /// Everything this side sent.
        var sent: [UInt8] = []
    }

    /// Runs two handshakes against each other, delivering bytes in chunks of `chunk`.
    static func converse(_ a: inout TCPHandshake, _ b: inout TCPHandshake, chunk: Int = .max) -> (Outcome, Outcome) {
        var toB: [UInt8] = []
        var toA: [UInt8] = []
        var outA = Outcome(), outB = Outcome()
        func apply(_ actions: [TCPHandshake.Action], out: inout Outcome, wire: inout [UInt8]) {
            for action in actions {
                switch action {
                case .send(let bytes): wire += bytes; out.sent += bytes
                case .established(let session): out.session = session
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
        (TCPHandshake(role: .initiator, key: ka, localNode: nodeA, now: clock.now(), timeout: .seconds(5)),
         TCPHandshake(role: .acceptor, key: kb, localNode: nodeB, now: clock.now(), timeout: .seconds(5)))
    }

    /// Seals `plaintext` with `sender` and opens it with `receiver`: true when they share keys.
    static func carries(_ sender: inout NoiseCipherState, _ receiver: inout NoiseCipherState, _ plaintext: [UInt8]) -> Bool {
        guard let sealed = try? sender.encrypt(ad: [], plaintext) else { return false }
        return (try? receiver.decrypt(ad: [], sealed)) == plaintext
    }

    @Test("without keys both sides establish in the clear and learn each other's node id",
          arguments: [1, 3, 7, 24, Int.max])
    func plain(chunk: Int) {
        var (a, b) = Self.pair(nil, nil)
        let (oa, ob) = Self.converse(&a, &b, chunk: chunk)
        #expect(oa.failure == nil && ob.failure == nil)
        #expect(oa.session?.isEncrypted == false && ob.session?.isEncrypted == false)
        #expect(oa.session?.peerNode == Self.nodeB)
        #expect(ob.session?.peerNode == Self.nodeA)
        #expect(a.phase == .established && b.phase == .established)
        #expect(oa.sent.count == TCPHandshake.preambleSize + TCPHandshake.identitySize)
    }

    @Test("the same key gives both sides matching transport keys under any split of the bytes",
          arguments: [1, 5, 31, 57, 90, Int.max])
    func sameKey(chunk: Int) throws {
        var (a, b) = Self.pair(Self.keyA, Self.keyA)
        let (oa, ob) = Self.converse(&a, &b, chunk: chunk)
        #expect(oa.failure == nil && ob.failure == nil)
        var sa = try #require(oa.session), sb = try #require(ob.session)
        #expect(sa.isEncrypted && sb.isEncrypted)
        #expect(sa.peerNode == Self.nodeB && sb.peerNode == Self.nodeA)
        #expect(sa.handshakeHash == sb.handshakeHash && sa.handshakeHash.count == 32)
        #expect(sa.leftover.isEmpty && sb.leftover.isEmpty)
        // The initiator's confirmation used its nonce 0 and the acceptor's receive nonce 0.
        #expect(sa.send?.nonce == 1 && sb.receive?.nonce == 1)
        #expect(Self.carries(&sa.send!, &sb.receive!, Array("to the acceptor".utf8)))
        #expect(Self.carries(&sb.send!, &sa.receive!, Array("to the initiator".utf8)))
        // Each direction has its own key.
        var crossed = sa.send!
        #expect(!Self.carries(&crossed, &sa.receive!, [1, 2, 3]))
        // Nothing the initiator sent repeats the key.
        #expect(!oa.sent.contains(subsequence: Self.keyA.bytes))
    }

    @Test("fresh ephemeral keys give every connection its own transport keys")
    func freshKeysPerConnection() throws {
        var (a1, b1) = Self.pair(Self.keyA, Self.keyA)
        var (a2, b2) = Self.pair(Self.keyA, Self.keyA)
        let (o1, _) = Self.converse(&a1, &b1)
        let (o2, _) = Self.converse(&a2, &b2)
        #expect(try #require(o1.session).handshakeHash != (try #require(o2.session)).handshakeHash)
        #expect(o1.sent != o2.sent)
    }

    @Test("different keys: the acceptor refuses the first message and sends nothing back")
    func wrongKey() {
        var (a, b) = Self.pair(Self.keyA, Self.keyB)
        let (oa, ob) = Self.converse(&a, &b)
        #expect(oa.session == nil && ob.session == nil)
        #expect(ob.failure?.kind == .messageNotAuthenticated(offset: 8, message: "first handshake message"))
        #expect(ob.failure?.isKeyMismatch == true)
        #expect(ob.sent.isEmpty, "a peer without the key must get nothing to test a guess against")
        // The initiator is left waiting; the shell reports the close.
        #expect(a.phase == .awaitingPreamble)
        let closed = a.peerClosed()
        guard case .fail(let e)? = closed.first else { Issue.record("no failure: \(closed)"); return }
        #expect(e.isKeyMismatch && e.isAuthenticationFailure)
        #expect(e.description.contains("refuses this side's cluster key"))
    }

    @Test("a missing key on either side fails both, each with its own typed reason")
    func missingKey() {
        var (a, b) = Self.pair(nil, Self.keyA)
        let (oa, ob) = Self.converse(&a, &b)
        #expect(oa.failure?.kind == .localHasNoKey)
        #expect(ob.failure?.kind == .peerHasNoKey)
        #expect(oa.failure?.isAuthenticationFailure == true)
        #expect(ob.failure?.isAuthenticationFailure == true)
        // The acceptor told the initiator its mode: just a preamble, nothing keyed.
        #expect(ob.sent == TCPHandshake.preamble(role: .acceptor, mode: .noise))

        var (c, d) = Self.pair(Self.keyA, nil)
        let (oc, od) = Self.converse(&c, &d)
        #expect(oc.failure?.kind == .peerHasNoKey)
        #expect(od.failure?.kind == .localHasNoKey)
    }

    @Test("a recorded client session replayed to the acceptor fails at the confirmation record")
    func replayedSession() throws {
        var (a, b) = Self.pair(Self.keyA, Self.keyA)
        let (recorded, _) = Self.converse(&a, &b)
        #expect(recorded.failure == nil)
        // Replay everything the initiator sent to a fresh acceptor (new ephemeral key).
        var fresh = TCPHandshake(role: .acceptor, key: Self.keyA, localNode: Self.nodeB, now: .zero, timeout: .seconds(5))
        let actions = recorded.sent.withUnsafeBytes { fresh.receive($0) }
        let failures = actions.compactMap { action -> TCPHandshakeError? in
            if case .fail(let e) = action { return e } else { return nil }
        }
        let offset = TCPHandshake.preambleSize + TCPHandshake.firstMessageSize
        #expect(failures.map(\.kind) == [.messageNotAuthenticated(offset: offset, message: "confirmation record")])
        #expect(!actions.contains { if case .established = $0 { return true } else { return false } })
    }

    @Test("a tampered byte anywhere in the keyed handshake fails it", arguments: Array(stride(from: 0, to: 56, by: 5)))
    func tamperedFirstMessage(at index: Int) {
        var a = TCPHandshake(role: .initiator, key: Self.keyA, localNode: nil, now: .zero, timeout: .seconds(5))
        var b = TCPHandshake(role: .acceptor, key: Self.keyA, localNode: nil, now: .zero, timeout: .seconds(5))
        guard case .send(var opening)? = a.start().first else { Issue.record("no opening"); return }
        opening[index] ^= 0x01
        let actions = opening.withUnsafeBytes { b.receive($0) }
        #expect(actions.contains { if case .fail = $0 { return true } else { return false } })
        #expect(b.phase == .failed)
    }

    @Test("garbage is rejected at its first wrong byte, naming the offset")
    func garbage() {
        var h = TCPHandshake(role: .acceptor, key: nil, localNode: nil, now: .zero, timeout: .seconds(1))
        let ok = Array("SP".utf8).withUnsafeBytes { h.receive($0) }
        #expect(ok.isEmpty)
        let bad = Array("XX".utf8).withUnsafeBytes { h.receive($0) }
        guard case .fail(let e)? = bad.first else { Issue.record("no failure: \(bad)"); return }
        #expect(e.kind == .badMagic(offset: 2, byte: 0x58))
        #expect(!e.isAuthenticationFailure)
        #expect(e.description.contains("byte 2"))
        // Later bytes are ignored once failed.
        #expect(Array("more".utf8).withUnsafeBytes { h.receive($0) }.isEmpty)
    }

    @Test("garbage at a side with a key counts as an authentication failure")
    func garbageWithKey() {
        var h = TCPHandshake(role: .acceptor, key: Self.keyA, localNode: nil, now: .zero, timeout: .seconds(1))
        let bad = Array("GET / HTTP/1.1\r\n".utf8).withUnsafeBytes { h.receive($0) }
        guard case .fail(let e)? = bad.first else { Issue.record("no failure: \(bad)"); return }
        #expect(e.kind == .badMagic(offset: 0, byte: UInt8(ascii: "G")))
        #expect(e.isAuthenticationFailure)
    }

    @Test("a wrong version, mode, role or reserved byte is rejected at its byte")
    func preambleFields() {
        func reject(_ index: Int, _ value: UInt8, role: TCPHandshake.Role = .acceptor) -> TCPHandshakeError.Kind? {
            var h = TCPHandshake(role: role, key: nil, localNode: nil, now: .zero, timeout: .seconds(1))
            var p = TCPHandshake.preamble(role: role == .acceptor ? .initiator : .acceptor, mode: .plain)
            p[index] = value
            let r = p.withUnsafeBytes { h.receive($0) }
            if case .fail(let e)? = r.first { return e.kind }
            return nil
        }
        #expect(reject(4, 1) == .unsupportedVersion(1, offset: 4))
        #expect(reject(5, 7) == .badMode(7, offset: 5))
        #expect(reject(6, 2) == .badRole(2, offset: 6, local: .acceptor))
        #expect(reject(6, 1, role: .initiator) == .badRole(1, offset: 6, local: .initiator))
        #expect(reject(7, 1) == .reservedNotZero(1, offset: 7))
    }

    @Test("bytes after the handshake are handed on as the start of the record stream")
    func leftover() throws {
        var a = TCPHandshake(role: .initiator, key: Self.keyA, localNode: nil, now: .zero, timeout: .seconds(1))
        var b = TCPHandshake(role: .acceptor, key: Self.keyA, localNode: nil, now: .zero, timeout: .seconds(1))
        guard case .send(let opening)? = a.start().first else { Issue.record("no opening"); return }
        guard case .send(let reply)? = opening.withUnsafeBytes({ b.receive($0) }).first else { Issue.record("no reply"); return }
        let done = (reply + [9, 9, 9]).withUnsafeBytes { a.receive($0) }
        guard case .established(let session)? = done.last else { Issue.record("not established: \(done)"); return }
        #expect(session.leftover == [9, 9, 9])
        #expect(session.leftoverOffset == TCPHandshake.preambleSize + TCPHandshake.secondMessageSize)
    }

    @Test("the deadline fails the handshake on the manual clock, not before")
    func timeout() {
        let clock = ManualClock()
        var h = TCPHandshake(role: .initiator, key: Self.keyA, localNode: nil, now: clock.now(), timeout: .seconds(2))
        _ = h.start()
        clock.advance(by: .milliseconds(1999))
        #expect(h.tick(now: clock.now()).isEmpty)
        clock.advance(by: .milliseconds(1))
        let r = h.tick(now: clock.now())
        guard case .fail(let e)? = r.first else { Issue.record("no timeout: \(r)"); return }
        #expect(e.kind == .timedOut(after: .seconds(2), waitingFor: "the peer's preamble"))
        #expect(e.isAuthenticationFailure)
        #expect(h.tick(now: clock.now()).isEmpty)
    }

    @Test("the peer closing mid-handshake fails it with the byte count seen")
    func peerClosed() {
        var h = TCPHandshake(role: .acceptor, key: nil, localNode: nil, now: .zero, timeout: .seconds(1))
        _ = Array("SPTC".utf8).withUnsafeBytes { h.receive($0) }
        let r = h.peerClosed()
        guard case .fail(let e)? = r.first else { Issue.record("no failure: \(r)"); return }
        #expect(e.kind == .peerClosed(afterBytes: 4, duringKeyedHandshake: false))
    }

    @Test("cluster keys are exactly 256 bits and never print their bytes")
    func clusterKeys() throws {
        #expect(throws: ClusterKeyError(byteCount: 5)) { try ClusterKey(bytes: [1, 2, 3, 4, 5]) }
        #expect(throws: ClusterKeyError(byteCount: 33)) { try ClusterKey(bytes: Array(repeating: 1, count: 33)) }
        #expect(ClusterKey.random().description == "ClusterKey(256 bits, redacted)")
        #expect(ClusterKey.random().bytes != ClusterKey.random().bytes)
    }
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs in the array.
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if Array(self[start..<(start + needle.count)]) == needle { return true }
        }
        return false
    }
}
