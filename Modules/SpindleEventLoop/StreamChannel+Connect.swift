import CLibUV
import SpindleKernel

extension StreamChannel {
    /// Connects to `tcp://host:port` (IPv4, IPv6 or a host name, resolved with `uv_getaddrinfo`)
    /// or `unix:///path`.
    /// - Throws: `EventLoopError` naming the address, e.g. ECONNREFUSED, ENOENT (no socket
    ///   file), EAI_NONAME (unknown host), EAFNOSUPPORT (`inproc://`), or `.loopShutDown`.
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
private final class Connector {
    let loop: EventLoop
    let address: Address
    let configuration: StreamConfiguration
    let completion: (Result<StreamChannel, EventLoopError>) -> Void
    var channel: StreamChannel?
    let connectRequest = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)

    init(loop: EventLoop, address: Address, configuration: StreamConfiguration,
         completion: @escaping (Result<StreamChannel, EventLoopError>) -> Void) {
        self.loop = loop
        self.address = address
        self.configuration = configuration
        self.completion = completion
    }

    deinit { connectRequest.deallocate() }

    var operation: String { "connect to \(address)" }

    func fail(_ error: EventLoopError) {
        completion(.failure(error))
    }

    func start() {
        guard !loop.isClosing else { return fail(.loopShutDown(loop.name, operation)) }
        switch address {
        case .inproc:
            fail(EventLoopError(code: UV_EAFNOSUPPORT.rawValue, name: "EAFNOSUPPORT", operation: operation,
                                message: "inproc:// addresses belong to the in-process transport, not to sockets"))
        case .unix(let path):
            let raw = StreamChannel.allocateHandle()
            uv_pipe_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_pipe_t.self), 0)
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

    private func resolve(host: String, port: UInt16) {
        let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let status = uv_getaddrinfo(loop.uvLoop, request, { req, status, info in
            guard let req else { return }
            let connector = Unmanaged<Connector>.fromOpaque(req.pointee.data!).takeRetainedValue()
            req.deallocate()
            defer { if let info { uv_freeaddrinfo(info) } }
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
            Unmanaged<Connector>.fromOpaque(request.pointee.data!).release()
            request.deallocate()
            fail(EventLoopError(uvCode: status, operation: operation))
        }
    }

    private func connectTCP(_ sa: UnsafePointer<sockaddr>) {
        let raw = StreamChannel.allocateHandle()
        uv_tcp_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_tcp_t.self))
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
        guard let channel = connector.channel else { return }
        if status < 0 {
            channel.abandon()
            connector.fail(EventLoopError(uvCode: status, operation: connector.operation))
        } else {
            channel.didConnect()
            connector.completion(.success(channel))
        }
    }
}
