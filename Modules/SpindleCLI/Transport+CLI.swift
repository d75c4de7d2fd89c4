import Logging
import Spindle

/// The TCP transport the CLI uses, with the cluster key when one is given. Peers that fail
/// the authenticated handshake are logged as refusals.
func makeTCPTransport(loop: EventLoop, key: ClusterKey?, logger: Logger = Logger(label: "spindle.tcp")) -> any Transport {
    var configuration = TCPTransport.Configuration()
    configuration.clusterKey = key
    configuration.logger = logger
    configuration.onHandshakeFailure = { peer, reason in
        logger.warning("refused peer", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
    }
    return TCPTransport(loop: loop, configuration: configuration)
}
