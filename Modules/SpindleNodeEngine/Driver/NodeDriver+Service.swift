import ServiceLifecycle

/// A driver as a service of a `ServiceGroup`: `run()` waits for the group's graceful shutdown
/// (or cancellation) and then calls `shutdown()`: polling stops, calls still waiting fail with
/// `.shutDown`, the listener and every link close. The loop and transport are the caller's:
/// list the transport before the driver so the driver stops first.
extension NodeDriver: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}
