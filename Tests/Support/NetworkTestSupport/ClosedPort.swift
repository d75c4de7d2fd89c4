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
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    return bound ? .tcp(host: "127.0.0.1", port: UInt16(bigEndian: addr.sin_port)) : nil
}
