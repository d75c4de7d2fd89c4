import ArgumentParser
import Logging
import ServiceLifecycle
import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// `spindle host-agent`: runs a host agent until SIGINT or SIGTERM.
struct HostAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host-agent",
        abstract: "Run a host agent: install pushed config, start and supervise procs.",
        discussion: """
        Prints "spindle host-agent listening on ADDRESS" on stdout once it listens.
        Listening on anything but loopback requires --key-file. Procs may run only the
        programs given with --allow (default: this spindle executable).
        """)

    @Option(name: .long, help: "Address to listen on, e.g. tcp://127.0.0.1:7100 (port 0 = any).")
    var listen: String

    @Option(name: .long, parsing: .upToNextOption, help: "Programs procs may run (paths or names in PATH).")
    var allow: [String] = []

    @Option(name: .long, help: "Seconds between SIGTERM and SIGKILL when stopping a proc.")
    var grace: Double = 5

    @Option(name: .long, help: "Seconds without a word from a client (or proc) before it is declared lost and its procs are stopped.")
    var liveness: Double = 5

    @Option(name: .long, help: "Address clients dial, when it differs from --listen (a wildcard bind, NAT): host, or tcp://host:port.")
    var advertise: String?

    @Flag(name: .long, help: "Shut down when standard input closes (how `spindle cluster up` ties an agent to its ssh session).")
    var exitOnStdinClose = false

    @OptionGroup var common: CommonOptions

    func run() async throws {
        bootstrapLogging(try common.logLevelValue())
        let address: Address
        do { address = try Address(parsing: listen) } catch { throw ValidationError(error.description) }
        guard grace >= 0 else { throw ValidationError("--grace must not be negative") }
        guard liveness >= 1, liveness.isFinite else { throw ValidationError("--liveness must be at least 1 second") }
        let key = try common.keyFile.map(loadClusterKey)
        let advertised = try advertise.map { text throws -> Address in
            do { return try Address(parsing: text.contains("://") ? text : "tcp://\(text):0") }
            catch { throw ValidationError("--advertise: \(error)") }
        }

        let loop = try EventLoop(name: "spindle-host-agent")
        let transport = makeTCPTransport(loop: loop, key: key, advertised: advertised)
        var config = HostAgent.Configuration()
        config.listenAddress = address
        config.transportAuthenticates = key != nil
        config.allowedPrograms = allow.isEmpty ? nil : allow
        config.stopGrace = .milliseconds(Int64(grace * 1000))
        config.livenessBound = .milliseconds(Int64(liveness * 1000))
        config.procKeyFile = common.keyFile.map(absolutePath)
        config.logger = Logger(label: "spindle.host-agent")
        let agent = HostAgent(on: loop, transport: transport, configuration: config)

        let bound: Address
        do {
            bound = try await agent.start()
        } catch {
            await transport.shutdown()
            await loop.shutdown()
            throw CLIError(description: error.description)
        }
        printFlushed("spindle host-agent listening on \(bound)")
        // One documented order (docs/operations.md): the group stops services in reverse, so
        // the agent (its procs, then its links) stops before the transport under it. SIGTERM
        // and SIGINT shut down gracefully.
        var services: [any Service] = [transport, agent]
        if exitOnStdinClose { services.append(StandardInputWatch()) }
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: config.logger))
        defer { config.logger.info("host agent stopped") }
        do {
            try await group.run()
        } catch {
            await loop.shutdown()
            throw CLIError(description: "\(error)")
        }
        await loop.shutdown()
    }
}

/// Ends when standard input reaches its end: with `successTerminationBehavior:
/// .gracefullyShutdownGroup`, that shuts the agent down (how `spindle cluster up` ties an agent
/// to its ssh session).
struct StandardInputWatch: Service {
    func run() async throws {
        let (closed, continuation) = AsyncStream<Void>.makeStream()
        try onStandardInputClosed { continuation.finish() }
        await cancelWhenGracefulShutdown {
            for await _ in closed {}
        }
    }
}
