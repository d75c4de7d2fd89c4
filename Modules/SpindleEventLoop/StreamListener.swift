import CLibUV
import Logging
import SpindleKernel

/// A listening TCP or Unix-domain socket that hands each accepted connection to `onAccept`.
///
/// `onAccept` runs on the loop thread with a new ``StreamChannel`` that is not reading yet
/// (call ``StreamChannel/start(onRead:onClose:)``). A Unix-domain listener removes its socket
/// file when closed.
public final class StreamListener: LoopResource, @unchecked Sendable {
    // @unchecked Sendable: `address` and the handle pointer are immutable; `closed` and the
    // callback are touched only on the loop thread.

    enum Kind { case tcp, pipe }

    public let loop: EventLoop
    /// The bound address (the real port when asked for port 0).
    public let address: Address
    public let configuration: StreamConfiguration
    private let kind: Kind
    private let raw: UnsafeMutableRawPointer
    private var onAccept: (@Sendable (StreamChannel) -> Void)?
    private var closed = false
    private static let logger = Logger(label: "spindle.eventloop.listener")

    private init(loop: EventLoop, kind: Kind, raw: UnsafeMutableRawPointer, address: Address,
                 configuration: StreamConfiguration, onAccept: @escaping @Sendable (StreamChannel) -> Void) {
        self.loop = loop
        self.kind = kind
        self.raw = raw
        self.address = address
        self.configuration = configuration
        self.onAccept = onAccept
        raw.assumingMemoryBound(to: uv_handle_t.self).pointee.data = Unmanaged.passUnretained(self).toOpaque()
        loop.register(self)
    }

    /// Binds and listens on `tcp://host:port` (port 0 = any free port) or `unix:///path`.
    /// - Throws: `EventLoopError` naming the address (EADDRINUSE, EACCES, EAFNOSUPPORT for
    ///   `inproc://` or a host name that is not a numeric address, …) or `.loopShutDown`.
    public static func listen(on loop: EventLoop, address: Address, backlog: Int32 = 128,
                              configuration: StreamConfiguration = StreamConfiguration(),
                              onAccept: @escaping @Sendable (StreamChannel) -> Void)
        async throws(EventLoopError) -> StreamListener {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<StreamListener, EventLoopError>, Never>) in
            let accepted = loop.tryExecute {
                c.resume(returning: Result { () throws(EventLoopError) -> StreamListener in
                    try open(loop: loop, address: address, backlog: backlog, configuration: configuration,
                             onAccept: onAccept)
                })
            }
            if !accepted { c.resume(returning: .failure(.loopShutDown(loop.name, "listen on \(address)"))) }
        }
        return try result.get()
    }

    private static func open(loop: EventLoop, address: Address, backlog: Int32, configuration: StreamConfiguration,
                             onAccept: @escaping @Sendable (StreamChannel) -> Void) throws(EventLoopError) -> StreamListener {
        let operation = "listen on \(address)"
        guard !loop.isClosing else { throw .loopShutDown(loop.name, operation) }
        let raw = StreamChannel.allocateHandle()
        let handle = raw.assumingMemoryBound(to: uv_handle_t.self)
        func discard(_ status: Int32) -> EventLoopError {
            uv_close(handle) { $0?.deallocate() }
            return EventLoopError(uvCode: status, operation: operation)
        }
        let kind: Kind
        let bound: Address
        switch address {
        case .inproc:
            raw.deallocate()
            throw EventLoopError(code: UV_EAFNOSUPPORT.rawValue, name: "EAFNOSUPPORT", operation: operation,
                                 message: "inproc:// addresses belong to the in-process transport, not to sockets")
        case .tcp(let host, let port):
            let tcp = raw.assumingMemoryBound(to: uv_tcp_t.self)
            uv_tcp_init(loop.uvLoop, tcp)
            let numericHost = host == "localhost" ? "127.0.0.1" : host
            guard var storage = SocketAddress.numeric(host: numericHost, port: port) else {
                uv_close(handle) { $0?.deallocate() }
                throw EventLoopError(code: UV_EAFNOSUPPORT.rawValue, name: "EAFNOSUPPORT", operation: operation,
                                     message: "listen needs a numeric IPv4 or IPv6 host, not \"\(host)\"")
            }
            let status = withUnsafeBytes(of: &storage) {
                uv_tcp_bind(tcp, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 0)
            }
            if status < 0 { throw discard(status) }
            kind = .tcp
            bound = SocketAddress.tcpAddress(tcp, peer: false) ?? address
        case .unix(let path):
            let pipe = raw.assumingMemoryBound(to: uv_pipe_t.self)
            uv_pipe_init(loop.uvLoop, pipe, 0)
            let status = uv_pipe_bind(pipe, path)
            if status < 0 { throw discard(status) }
            kind = .pipe
            bound = address
        }
        let listener = StreamListener(loop: loop, kind: kind, raw: raw, address: bound,
                                      configuration: configuration, onAccept: onAccept)
        let status = uv_listen(raw.assumingMemoryBound(to: uv_stream_t.self), backlog) { server, status in
            guard let server else { return }
            Unmanaged<StreamListener>.fromOpaque(server.pointee.data!).takeUnretainedValue().accept(status)
        }
        if status < 0 {
            listener.closeHandle()
            throw EventLoopError(uvCode: status, operation: operation)
        }
        return listener
    }

    private func accept(_ status: Int32) {
        guard !closed else { return }
        if status < 0 {
            StreamListener.logger.warning("accept failed", metadata: [
                "address": "\(address)", "error": "\(EventLoopError(uvCode: status, operation: "accept on \(address)"))",
            ])
            return
        }
        let clientRaw = StreamChannel.allocateHandle()
        let channelKind: StreamChannel.Kind
        switch kind {
        case .tcp:
            uv_tcp_init(loop.uvLoop, clientRaw.assumingMemoryBound(to: uv_tcp_t.self))
            channelKind = .tcp
        case .pipe:
            uv_pipe_init(loop.uvLoop, clientRaw.assumingMemoryBound(to: uv_pipe_t.self), 0)
            channelKind = .pipe
        }
        let result = uv_accept(raw.assumingMemoryBound(to: uv_stream_t.self), clientRaw.assumingMemoryBound(to: uv_stream_t.self))
        if result < 0 {
            uv_close(clientRaw.assumingMemoryBound(to: uv_handle_t.self)) { $0?.deallocate() }
            StreamListener.logger.warning("accept failed", metadata: [
                "address": "\(address)", "error": "\(EventLoopError(uvCode: result, operation: "accept on \(address)"))",
            ])
            return
        }
        let channel = StreamChannel(loop: loop, kind: channelKind, handle: clientRaw,
                                    label: "connection accepted on \(address)", configuration: configuration)
        channel.didConnect()
        onAccept?(channel)
    }

    /// Stops listening and closes the socket (removing a Unix socket file). Idempotent, any thread.
    /// Connections already accepted stay open.
    public func close() {
        loop.runOnLoop { self.closeHandle() }
    }

    private func closeHandle() {
        guard !closed else { return }
        closed = true
        onAccept = nil
        uv_close(raw.assumingMemoryBound(to: uv_handle_t.self)) { h in
            guard let h else { return }
            let listener = Unmanaged<StreamListener>.fromOpaque(h.pointee.data!).takeUnretainedValue()
            h.deallocate()
            if case .unix(let path) = listener.address { unlink(path) }
            listener.loop.unregister(listener)
        }
    }

    func closeForShutdown() { closeHandle() }
}
