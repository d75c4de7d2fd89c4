// ActorPeerFixture: the remote process of the SpindleActors tests.
//
//   (as a proc of a proc mesh)  an actor host for MeshCounter, MeshProbe and Counter
//   ActorPeerFixture peer     serves a Calculator ("calculator") and an Observer ("observer")
//                             on a SpindleActorSystem listening on tcp://127.0.0.1:0, prints
//                             "READY <calculator id>" and serves until stdin closes.
import ActorFixtureActors
import SpindleActors
import SpindleKernel
import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

func fail(_ status: Int32, _ message: String) -> Never {
    var line = Array("ActorPeerFixture: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(status)
}

// Started by a host agent as a proc: serve mesh actors, never return.
ActorHost.runIfActorHost(registering: [MeshCounter.self, MeshProbe.self, Counter.self]) { env in
    var c = TCPTransport.Configuration()
    if let file = env.keyFile { c.clusterKey = try ClusterKey(contentsOfFile: file) }
    return try TCPTransport(loopCount: 1, configuration: c)
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.first == "peer" else { fail(2, "usage: ActorPeerFixture peer") }

do {
    let transport = try TCPTransport(loopCount: 1)
    var configuration = SpindleActorSystem.Configuration(listenAddress: .tcp(host: "127.0.0.1", port: 0))
    configuration.logger.logLevel = .warning
    // The test process may stall for seconds while the whole suite shares 2 cores; the tests
    // of liveness watch this peer from the test's side, so this side waits a minute.
    configuration.link.core.livenessBound = .seconds(60)
    let system = try await SpindleActorSystem(transport: transport, configuration: configuration)
    let calculator = try system.withWellKnownName("calculator") { Calculator(actorSystem: system) }
    let observer = try system.withWellKnownName("observer") { Observer(actorSystem: system) }
    var line = Array("READY \(calculator.id)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
    // Serve until the test closes stdin (or dies, which closes it too).
    var buffer = [UInt8](repeating: 0, count: 64)
    while read(0, &buffer, buffer.count) > 0 {}
    withExtendedLifetime((calculator, observer)) {}
    await system.shutdown()
    await transport.shutdown()
    exit(0)
} catch {
    fail(1, "\(error)")
}
