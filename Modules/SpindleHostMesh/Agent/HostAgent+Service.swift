import ServiceLifecycle

/// An agent as a service of a `ServiceGroup`: `run()` starts it when nobody has (so a failure to
/// listen ends the group with that error), serves until the group's graceful shutdown or
/// cancellation, then shuts it down: every proc stopped (SIGTERM, then SIGKILL after the grace),
/// the listener and links closed. List the transport before the agent.
extension HostAgent: Service {
    public func run() async throws {
        if address == nil { try await start() }
        try? await gracefulShutdown()
        await shutdown()
    }
}
