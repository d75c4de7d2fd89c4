import ServiceLifecycle

/// A queue as a service of a `ServiceGroup`: `run()` waits for the group's graceful shutdown
/// (or cancellation) and then calls `shutdown()`: nothing more is accepted, queued tasks
/// fail with ``TaskFailure/shutDown`` (their callers are told), running tasks get
/// `shutdownGrace` to finish, then their workers are stopped.
extension TaskQueue: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}
