import SpindleEventLoop
import SpindleKernel
import Synchronization
@testable import SpindleTCP

/// A man in the middle: a TCP byte proxy between clients and `upstream` that records every
/// byte in both directions and can rewrite the client's bytes on the way (the attacker on the
/// path of the threat model in docs/tcp.md).
final class ByteRelay: Sendable {
    /// Which way bytes flow.
    enum Direction: Sendable { case toServer, toClient }

    /// Rewrites bytes crossing the relay: `offset` is the position of `bytes[0]` in its
    /// connection's stream in that direction.
    typealias Tamper = @Sendable (_ direction: Direction, _ offset: Int, _ bytes: inout [UInt8]) -> Void

    let listener: StreamListener
    let upstream: Address
    private let tamper: Tamper?
    /// Every chunk relayed client → server and server → client, in order, all connections.
    let toServer = Collector<[UInt8]>()
    let toClient = Collector<[UInt8]>()
    private let channels = Mutex<[StreamChannel]>([])
    /// When set, bytes in both directions vanish (a partition that keeps the sockets open).
    private let dropping = Atomic<Bool>(false)

    /// From now on every byte in both directions is dropped, silently.
    func dropEverything() { dropping.store(true, ordering: .relaxed) }

    var address: Address { listener.address }

    private init(listener: StreamListener, upstream: Address, tamper: Tamper?) {
        self.listener = listener
        self.upstream = upstream
        self.tamper = tamper
    }

    static func start(on loop: EventLoop, upstream: Address, tamper: Tamper? = nil) async throws -> ByteRelay {
        let box = Mutex<ByteRelay?>(nil)
        let listener = try await StreamListener.listen(on: loop, address: .tcp(host: "127.0.0.1", port: 0)) { client in
            guard let relay = box.withLock({ $0 }) else { client.close(); return }
            relay.accepted(client, loop: loop)
        }
        let relay = ByteRelay(listener: listener, upstream: upstream, tamper: tamper)
        box.withLock { $0 = relay }
        return relay
    }

    /// All bytes relayed in `direction`, concatenated.
    func bytes(_ direction: Direction) -> [UInt8] {
        (direction == .toServer ? toServer : toClient).items.flatMap { $0 }
    }

    /// Closes the listener and every relayed connection.
    func close() {
        listener.close()
        for c in channels.withLock({ $0 }) { c.close() }
    }

    private func accepted(_ client: StreamChannel, loop: EventLoop) {
        channels.withLock { $0.append(client) }
        let upstream = self.upstream
        Task {
            guard let server = try? await StreamChannel.connect(on: loop, to: upstream) else {
                client.close()
                return
            }
            self.channels.withLock { $0.append(server) }
            let up = Offset(), down = Offset()
            client.start(onRead: { [self] bytes in
                if dropping.load(ordering: .relaxed) { return }
                var chunk = Array(bytes)
                tamper?(.toServer, up.advance(by: chunk.count), &chunk)
                toServer.append(chunk)
                server.write(chunk)
            }, onClose: { _ in server.close() })
            server.start(onRead: { [self] bytes in
                if dropping.load(ordering: .relaxed) { return }
                var chunk = Array(bytes)
                tamper?(.toClient, down.advance(by: chunk.count), &chunk)
                toClient.append(chunk)
                client.write(chunk)
            }, onClose: { _ in client.close() })
        }
    }

    /// A stream position, advanced on the loop thread.
    private final class Offset: Sendable {
        private let value = Atomic<Int>(0)
        /// Returns the offset before advancing it by `n`.
        func advance(by n: Int) -> Int { value.add(n, ordering: .relaxed).oldValue }
    }
}

/// Flips one bit of the byte at `target` of the client → server stream.
func flipping(byteAt target: Int) -> ByteRelay.Tamper {
    { direction, offset, bytes in
        guard direction == .toServer, target >= offset, target < offset + bytes.count else { return }
        bytes[target - offset] ^= 0x01
    }
}

/// A hand-driven keyed client: runs the handshake state machine over a raw stream, then lets
/// a test write records of its own making (reordered, truncated, oversized).
struct RawNoiseClient {
    let peer: RawPeer
    var send: NoiseCipherState
    /// Bytes of the client's stream written so far (the next record's offset at the server).
    var written: Int

    static func connect(loop: EventLoop, to address: Address, key: ClusterKey, node: NodeID? = nil) async throws -> RawNoiseClient {
        let peer = try await RawPeer.connect(loop: loop, to: address)
        var handshake = TCPHandshake(role: .initiator, key: key, localNode: node, now: .zero, timeout: .seconds(10))
        var written = 0
        func perform(_ actions: [TCPHandshake.Action]) throws -> TCPHandshake.Session? {
            for action in actions {
                switch action {
                case .send(let bytes):
                    peer.channel.write(bytes)
                    written += bytes.count
                case .established(let session): return session
                case .fail(let e): throw e
                }
            }
            return nil
        }
        _ = try perform(handshake.start())
        var consumed = 0
        while true {
            let chunks = try await peer.received.wait(count: consumed + 1, "the acceptor's handshake reply")
            for chunk in chunks[consumed...] {
                if let session = try chunk.withUnsafeBytes({ try perform(handshake.receive($0)) }) {
                    return RawNoiseClient(peer: peer, send: session.send!, written: written)
                }
            }
            consumed = chunks.count
        }
    }

    /// One record holding `plaintext`, sealed with the next record number.
    mutating func record(_ plaintext: [UInt8]) throws -> [UInt8] {
        let sealed = try send.encrypt(ad: [], plaintext)
        let length = UInt16(sealed.count)
        return [UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8)] + sealed
    }

    /// Writes raw bytes to the server.
    mutating func write(_ bytes: [UInt8]) {
        peer.channel.write(bytes)
        written += bytes.count
    }
}
