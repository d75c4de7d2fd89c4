import Logging
import Spindle

/// The TCP transport the CLI uses, with the cluster key when one is given (refused peers are
/// counted and logged sparingly by the transport itself) and, for listeners bound to a
/// wildcard, the address to advertise instead.
func makeTCPTransport(loop: EventLoop, key: ClusterKey?, advertised: Address? = nil,
                      logger: Logger = Logger(label: "spindle.tcp")) -> TCPTransport {
    var configuration = TCPTransport.Configuration()
    configuration.clusterKey = key
    configuration.advertisedAddress = advertised
    configuration.logger = logger
    return TCPTransport(loop: loop, configuration: configuration)
}
