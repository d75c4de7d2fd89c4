import CLibUV
import Logging
import SpindleKernel
#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP or Unix-domain socket that hands each accepted connection to `onAccept`.
///
/// `onAccept` runs on the accepted channel's loop thread with a new ``StreamChannel`` that is
/// not reading yet (call ``StreamChannel/start(onRead:onClose:)``). Without a `childGroup`
/// every accepted channel lives on the listener's loop; with one, accepted channels are
/// spread round robin over the group's loops. A libuv handle cannot change loops, so a
/// connection bound elsewhere is accepted here, its descriptor duplicated (close-on-exec),
/// the accepting handle closed, and the duplicate opened on the target loop:
///
///     listener loop: uv_accept ─► dup(fd) ─► uv_close ──execute──► target loop: uv_tcp_open ─► onAccept
///
/// A Unix-domain listener removes its socket file when closed.
public final class StreamListener: LoopResource, @unchecked Sendable {
    // @unchecked Sendable: `address`, the handle pointer and `childLoops` are immutable;
    // `closed`, `nextChild` and the callback are touched only on the loop thread.

    enum Kind { case tcp, pipe }

    public let loop: EventLoop
    /// The bound address (the real port when asked for port 0).
    public let address: Address
    public let configuration: StreamConfiguration
    private let kind: Kind
    private let raw: UnsafeMutableRawPointer
    private var onAccept: (@Sendable (StreamChannel) -> Void)?
    private var closed = false
    /// The loops accepted channels go to in turn (empty: this listener's loop).
    private let childLoops: [EventLoop]
    private var nextChild = 0
    private static let logger = Logger(label: "spindle.eventloop.listener")

    private init(loop: EventLoop, kind: Kind, raw: UnsafeMutableRawPointer, address: Address,
                 configuration: StreamConfiguration, childLoops: [EventLoop],
                 onAccept: @escaping @Sendable (StreamChannel) -> Void) {
        self.loop = loop
        self.childLoops = childLoops
        self.kind = kind
        self.raw = raw
        self.address = address
        self.configuration = configuration
        self.onAccept = onAccept
        raw.assumingMemoryBound(to: uv_handle_t.self).pointee.data = Unmanaged.passUnretained(self).toOpaque()
        loop.register(self)
    }

    /// Binds and listens on `tcp://host:port` (port 0 = any free port) or `unix:///path`.
    /// - Parameters:
    ///   - loop: the loop the listening socket lives on.
    ///   - childGroup: when given, accepted channels are spread round robin over its loops
    ///     (the listener's own loop included if it is one of them); nil keeps them on `loop`.
    ///   - onAccept: called on the accepted channel's loop thread.
    /// - Throws: `EventLoopError` naming the address (EADDRINUSE, EACCES, EAFNOSUPPORT for
    ///   `inproc://` or a host name that is not a numeric address, …) or `.loopShutDown`.
    public static func listen(on loop: EventLoop, address: Address, backlog: Int32 = 128,
                              configuration: StreamConfiguration = StreamConfiguration(),
                              childGroup: EventLoopGroup? = nil,
                              onAccept: @escaping @Sendable (StreamChannel) -> Void)
        async throws(EventLoopError) -> StreamListener {
        let childLoops = childGroup?.loops ?? []
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<StreamListener, EventLoopError>, Never>) in
            let accepted = loop.tryExecute {
                c.resume(returning: Result { () throws(EventLoopError) -> StreamListener in
                    try open(loop: loop, address: address, backlog: backlog, configuration: configuration,
                             childLoops: childLoops, onAccept: onAccept)
                })
            }
            if !accepted { c.resume(returning: .failure(.loopShutDown(loop.name, "listen on \(address)"))) }
        }
        return try result.get()
    }

    private static func open(loop: EventLoop, address: Address, backlog: Int32, configuration: StreamConfiguration,
                             childLoops: [EventLoop],
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
            let initStatus = uv_tcp_init(loop.uvLoop, tcp)
            guard initStatus == 0 else {
                raw.deallocate()
                throw EventLoopError(uvCode: initStatus, operation: operation)
            }
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
            let initStatus = uv_pipe_init(loop.uvLoop, pipe, 0)
            guard initStatus == 0 else {
                raw.deallocate()
                throw EventLoopError(uvCode: initStatus, operation: operation)
            }
            let status = uv_pipe_bind(pipe, path)
            if status < 0 { throw discard(status) }
            kind = .pipe
            bound = address
        }
        let listener = StreamListener(loop: loop, kind: kind, raw: raw, address: bound,
                                      configuration: configuration, childLoops: childLoops, onAccept: onAccept)
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
            return logAcceptFailure(EventLoopError(uvCode: status, operation: "accept on \(address)"))
        }
        let channelKind: StreamChannel.Kind = kind == .tcp ? .tcp : .pipe
        guard let clientRaw = StreamListener.initialiseHandle(kind: channelKind, on: loop, operation: "accept on \(address)",
                                                              failure: logAcceptFailure) else { return }
        let client = clientRaw.assumingMemoryBound(to: uv_handle_t.self)
        let result = uv_accept(raw.assumingMemoryBound(to: uv_stream_t.self), clientRaw.assumingMemoryBound(to: uv_stream_t.self))
        if result < 0 {
            uv_close(client) { $0?.deallocate() }
            return logAcceptFailure(EventLoopError(uvCode: result, operation: "accept on \(address)"))
        }
        let target = nextTargetLoop()
        guard target !== loop else {
            return StreamListener.deliver(clientRaw, kind: channelKind, on: loop, address: address,
                                          configuration: configuration, onAccept: onAccept)
        }
        // Hand the connection to another loop: its own descriptor there, this handle closed.
        var fd = uv_os_fd_t()
        let filenoStatus = uv_fileno(client, &fd)
        let copy = filenoStatus == 0 ? spindle_dup_cloexec(fd) : filenoStatus
        uv_close(client) { $0?.deallocate() }
        guard copy >= 0 else {
            return logAcceptFailure(EventLoopError(uvCode: copy, operation: "hand a connection accepted on \(address) to loop \"\(target.name)\""))
        }
        let (address, configuration, onAccept) = (self.address, self.configuration, self.onAccept)
        let handedOver = target.tryExecute {
            StreamListener.adopt(copy, kind: channelKind, on: target, address: address,
                                 configuration: configuration, onAccept: onAccept)
        }
        if !handedOver { _ = Glibc.close(copy) }   // the target loop has shut down
    }

    /// The loop the next accepted connection goes to (round robin over `childLoops`).
    private func nextTargetLoop() -> EventLoop {
        guard !childLoops.isEmpty else { return loop }
        defer { nextChild = (nextChild + 1) % childLoops.count }
        return childLoops[nextChild]
    }

    /// Opens an accepted descriptor handed over by another loop's listener (`loop`'s thread).
    private static func adopt(_ fd: Int32, kind: StreamChannel.Kind, on loop: EventLoop, address: Address,
                              configuration: StreamConfiguration, onAccept: (@Sendable (StreamChannel) -> Void)?) {
        let operation = "open a connection accepted on \(address) on loop \"\(loop.name)\""
        guard !loop.isClosing else {
            _ = Glibc.close(fd)
            return
        }
        guard let raw = initialiseHandle(kind: kind, on: loop, operation: operation, failure: { error in
            _ = Glibc.close(fd)
            logAcceptFailure(error, address: address)
        }) else { return }
        let status = kind == .tcp ? uv_tcp_open(raw.assumingMemoryBound(to: uv_tcp_t.self), fd)
                                  : uv_pipe_open(raw.assumingMemoryBound(to: uv_pipe_t.self), fd)
        if status < 0 {
            // The handle never took the descriptor.
            uv_close(raw.assumingMemoryBound(to: uv_handle_t.self)) { $0?.deallocate() }
            _ = Glibc.close(fd)
            return logAcceptFailure(EventLoopError(uvCode: status, operation: operation), address: address)
        }
        deliver(raw, kind: kind, on: loop, address: address, configuration: configuration, onAccept: onAccept)
    }

    /// Wraps an accepted handle in a channel, applies its socket options and hands it to
    /// `onAccept` (the handle's loop thread).
    private static func deliver(_ raw: UnsafeMutableRawPointer, kind: StreamChannel.Kind, on loop: EventLoop,
                                address: Address, configuration: StreamConfiguration,
                                onAccept: (@Sendable (StreamChannel) -> Void)?) {
        let channel = StreamChannel(loop: loop, kind: kind, handle: raw,
                                    label: "connection accepted on \(address)", configuration: configuration)
        do {
            try channel.didConnect()
        } catch {
            channel.abandon()
            return logAcceptFailure(error, address: address)
        }
        onAccept?(channel)
    }

    /// A new, initialised TCP or pipe handle on `loop`, or nil after reporting the failure.
    private static func initialiseHandle(kind: StreamChannel.Kind, on loop: EventLoop, operation: String,
                                         failure: (EventLoopError) -> Void) -> UnsafeMutableRawPointer? {
        let raw = StreamChannel.allocateHandle()
        let status = kind == .tcp ? uv_tcp_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_tcp_t.self))
                                  : uv_pipe_init(loop.uvLoop, raw.assumingMemoryBound(to: uv_pipe_t.self), 0)
        guard status == 0 else {
            raw.deallocate()
            failure(EventLoopError(uvCode: status, operation: operation))
            return nil
        }
        return raw
    }

    private func logAcceptFailure(_ error: EventLoopError) {
        StreamListener.logAcceptFailure(error, address: address)
    }

    private static func logAcceptFailure(_ error: EventLoopError, address: Address) {
        logger.warning("accept failed", metadata: ["address": "\(address)", "error": "\(error)"])
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
