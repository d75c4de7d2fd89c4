// A reliable-link peer in its own process, for tests that stop it (SIGSTOP) or kill it: it
// listens on 127.0.0.1 with a ReliableListener over SpindleTCP, prints
// `listening tcp://127.0.0.1:PORT`, echoes every message back on its link, and exits when its
// standard input closes.
import SpindleEventLoop
import SpindleKernel
import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

let loop = try EventLoop(name: "reliable-peer-fixture")
let transport = TCPTransport(loop: loop)
var configuration = ReliableLink.Configuration()
configuration.core.heartbeatInterval = .milliseconds(200)
configuration.core.livenessBound = .seconds(2)
let listener = try await ReliableListener.listen(over: transport, on: .tcp(host: "127.0.0.1", port: 0),
                                                 configuration: configuration) { link in
    ReliableLink.Handler(onDeliver: { e in try? link.send(e) }, onUndeliverable: { _, _ in })
}
print("listening \(listener.address)")
fflush(nil)
var byte: UInt8 = 0
while read(0, &byte, 1) > 0 {}
await listener.shutdown()
await transport.shutdown()
await loop.shutdown()
