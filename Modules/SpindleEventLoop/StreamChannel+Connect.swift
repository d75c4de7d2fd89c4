import CLibUV
import SpindleKernel

extension StreamChannel {
    /// Connects to `tcp://host:port` (IPv4, IPv6 or a host name, resolved with `uv_getaddrinfo`)
    /// or `unix:///path`.
    ///
    /// A connect still pending after `configuration.connectTimeout` (default 5 s; resolution
    /// included) is abandoned: its handle is closed and it fails with ETIMEDOUT. A TCP channel
    /// comes back with the configuration's TCP_NODELAY, keepalive and `TCP_USER_TIMEOUT` set.
    /// - Throws: `EventLoopError` naming the address, e.g. ECONNREFUSED, ETIMEDOUT (connect
    ///   timeout), ENOENT (no socket file), EAI_NONAME (unknown host), EAFNOSUPPORT
    ///   (`inproc://`), or `.loopShutDown`.
    public static func connect(on loop: EventLoop, to address: Address,
                               configuration: StreamConfiguration = StreamConfiguration())
        async throws(EventLoopError) -> StreamChannel {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<StreamChannel, EventLoopError>, Never>) in
            let accepted = loop.tryExecute {
                Connector(loop: loop, address: address, configuration: configuration) { c.resume(returning: $0) }.start()
            }
            if !accepted {
                c.resume(returning: .failure(.loopShutDown(loop.name, "connect to \(address)")))
            }
        }
        return try result.get()
    }
}

/// One connection attempt: resolve (when needed), create the handle, connect (loop thread).
///
/// Completes exactly once: with the channel, the error, or the connect timeout, whichever
/// comes first; callbacks that arrive after that (a cancelled connect or resolution) only
/// release what they hold.
private final class Connector: @unchecked Sendable {
    // @unchecked Sendable: created on the loop thread and touched only there (libuv callbacks
    // and the timeout timer all run on it); Sendable only so the timer closure may hold it.
    let loop: EventLoop
    let address: Address
    let configuration: StreamConfiguration
    let completion: (Result<StreamChannel, EventLoopError>) -> Void
    var channel: StreamChannel?
    let connectRequest = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
    /// The name resolution in progress (freed by its callback).
    var resolveRequest: UnsafeMutablePointer<uv_getaddrinfo_t>?
    var timer: LoopTimer?
    var completed = false

    init(loop: EventLoop, address: Address, configuration: StreamConfiguration,
         completion: @escaping (Result<StreamChannel, EventLoopError>) -> Void) {
        self.loop = loop
        self.address = address
        self.configuration = configuration
        self.completion = completion
    }

    deinit { connectRequest.deallocate() }

    var operation: String { "connect to \(address)" }

    func complete(_ result: Result<StreamChannel, EventLoopError>) {
        guard !completed else { return }
        completed = true
        timer?.cancel()
        timer = nil
        completion(result)
    }

    func fail(_ error: EventLoopError) {
        complete(.failure(error))
    }

    func start() {
        guard !loop.isClosing else { return fail(.loopShutDown(loop.name, operation)) }
        if let timeout = configuration.connectTimeout {
            // The timer keeps the connector alive until it fires or is cancelled.
            timer = loop.scheduleTimer(after: timeout) { [self] in timedOut(timeout) }
        }
        switch address {
        case .inproc:
            fail(EventLoopError(code: UV_EAFNOSUPPORT.rawValue, name: "EAFNOSUPPORT", operation: operation,
                                message: "inproc:// addresses belong to the in-process transport, not to sockets"))
        case .unix(let path):
            let raw = StreamChannel.allocateHandle()
            let status = uv_pipe_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_pipe_t.self), 0)
            guard status == 0 else {
                raw.deallocate()
                return fail(EventLoopError(uvCode: status, operation: operation))
            }
            channel = StreamChannel(loop: loop, kind: .pipe, handle: raw, label: address.description,
                                    configuration: configuration)
            connectRequest.pointee.data = Unmanaged.passRetained(self).toOpaque()
            uv_pipe_connect(connectRequest, raw.assumingMemoryBound(to: uv_pipe_t.self), path) { req, status in
                Connector.finished(req, status)
            }
        case .tcp(let host, let port):
            if var storage = SocketAddress.numeric(host: host, port: port) {
                withUnsafeBytes(of: &storage) { connectTCP($0.baseAddress!.assumingMemoryBound(to: sockaddr.self)) }
            } else {
                resolve(host: host, port: port)
            }
        }
    }

    /// The connect timeout fired before the attempt completed: abandon it.
    private func timedOut(_ timeout: Duration) {
        timer = nil
        guard !completed else { return }
        // Closing the handle cancels the connect (its callback then sees UV_ECANCELED); a
        // resolution is cancelled if it has not started, else its result is ignored.
        channel?.abandon()
        if let request = resolveRequest {
            _ = request.withMemoryRebound(to: uv_req_t.self, capacity: 1) { uv_cancel($0) }
        }
        fail(EventLoopError(code: UV_ETIMEDOUT.rawValue, name: "ETIMEDOUT", operation: operation,
                            message: "not connected within \(timeout), the connect timeout"))
    }

    private func resolve(host: String, port: UInt16) {
        let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        resolveRequest = request
        let status = uv_getaddrinfo(loop.uvLoop, request, { req, status, info in
            guard let req else { return }
            let connector = Unmanaged<Connector>.fromOpaque(req.pointee.data!).takeRetainedValue()
            connector.resolveRequest = nil
            req.deallocate()
            defer { if let info { uv_freeaddrinfo(info) } }
            guard !connector.completed else { return }   // timed out meanwhile
            if status < 0 {
                return connector.fail(EventLoopError(uvCode: status, operation: connector.operation))
            }
            guard !connector.loop.isClosing else {
                return connector.fail(.loopShutDown(connector.loop.name, connector.operation))
            }
            guard let sa = info?.pointee.ai_addr else {
                return connector.fail(EventLoopError(code: UV_EAI_NONAME.rawValue, name: "EAI_NONAME",
                                                     operation: connector.operation, message: "no address found"))
            }
            connector.connectTCP(UnsafePointer(sa))
        }, host, String(port), &hints)
        if status < 0 {
            resolveRequest = nil
            Unmanaged<Connector>.fromOpaque(request.pointee.data!).release()
            request.deallocate()
            fail(EventLoopError(uvCode: status, operation: operation))
        }
    }

    private func connectTCP(_ sa: UnsafePointer<sockaddr>) {
        let raw = StreamChannel.allocateHandle()
        let initStatus = uv_tcp_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_tcp_t.self))
        guard initStatus == 0 else {
            raw.deallocate()
            return fail(EventLoopError(uvCode: initStatus, operation: operation))
        }
        let channel = StreamChannel(loop: loop, kind: .tcp, handle: raw, label: address.description,
                                    configuration: configuration)
        self.channel = channel
        connectRequest.pointee.data = Unmanaged.passRetained(self).toOpaque()
        let status = uv_tcp_connect(connectRequest, raw.assumingMemoryBound(to: uv_tcp_t.self), sa) { req, status in
            Connector.finished(req, status)
        }
        if status < 0 {
            Unmanaged<Connector>.fromOpaque(connectRequest.pointee.data!).release()
            channel.abandon()
            fail(EventLoopError(uvCode: status, operation: operation))
        }
    }

    private static func finished(_ req: UnsafeMutablePointer<uv_connect_t>?, _ status: Int32) {
        guard let req else { return }
        let connector = Unmanaged<Connector>.fromOpaque(req.pointee.data!).takeRetainedValue()
        guard let channel = connector.channel, !connector.completed else { return }
        if status < 0 {
            channel.abandon()
            return connector.fail(EventLoopError(uvCode: status, operation: connector.operation))
        }
        do {
            try channel.didConnect()
        } catch {
            channel.abandon()
            return connector.fail(error)
        }
        connector.complete(.success(channel))
    }
}
