import SpindleKernel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A 127.0.0.1 port nothing listens on: bound to port 0 by a plain socket that never listens,
/// then closed, so a connect to it is refused at once. (A transport listener closed for the
/// purpose would not do: its close is asynchronous, and for a moment it may still accept.)
public func closedLocalPort() -> Address? {
    guard let (fd, address) = boundLoopbackSocket() else { return nil }
    close(fd)
    return address
}

/// A TCP socket bound to 127.0.0.1 port 0 (not listening), and the address it got.
private func boundLoopbackSocket() -> (Int32, Address)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard bound else { close(fd); return nil }
    return (fd, .tcp(host: "127.0.0.1", port: UInt16(bigEndian: addr.sin_port)))
}

/// A 127.0.0.1 port that refuses connections for as long as this object is open: a socket
/// bound to it that never listens. Unlike `closedLocalPort()`, no other test running in
/// parallel can take the port in the meantime (it stays bound).
public final class RefusingPort: @unchecked Sendable {
    // @unchecked Sendable: `fd` is set once in init and only closed by `close()`, which the
    // owning test calls once after it is done with the address.
    private var fd: Int32
    public let address: Address

    public init?() {
        guard let (fd, address) = boundLoopbackSocket() else { return nil }
        self.fd = fd
        self.address = address
    }

    /// Releases the port.
    public func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    deinit { close() }
}
