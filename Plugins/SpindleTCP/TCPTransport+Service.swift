import ServiceLifecycle

/// A transport as a service of a `ServiceGroup`: `run()` waits for the group's graceful
/// shutdown (or cancellation) and then shuts the transport down: listeners close,
/// connections close with `.transportShutdown`, a loop group the transport owns stops.
///
/// The group shuts services down in the reverse of their order, so list the transport
/// before everything that sends through it (docs/operations.md, "Shutdown order").
extension TCPTransport: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}
