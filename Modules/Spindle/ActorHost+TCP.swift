import SpindleActors
import SpindleHostMesh
import SpindleKernel
import SpindleTCP

extension ActorHost {
    /// `runIfActorHost(registering:transport:)` over SpindleTCP: a transport with its own
    /// event loop, authenticated with the cluster key of the proc's agent (`SPINDLE_KEY_FILE`)
    /// when it has one. The first line of a proc executable's `main.swift`:
    ///
    /// ```swift
    /// ActorHost.runIfActorHost(registering: [Counter.self])
    /// ```
    public static func runIfActorHost(registering types: [any MeshActor.Type]) {
        runIfActorHost(registering: types) { environment in
            var configuration = TCPTransport.Configuration()
            if let file = environment.keyFile { configuration.clusterKey = try ClusterKey(contentsOfFile: file) }
            return try TCPTransport(loopCount: 1, configuration: configuration)
        }
    }
}
