import CLibUV
import SpindleKernel

/// Conversions between `Address` and C socket addresses.
enum SocketAddress {
    /// A numeric IPv4 or IPv6 address as `sockaddr_storage`, or nil when `host` is a name.
    static func numeric(host: String, port: UInt16) -> sockaddr_storage? {
        var storage = sockaddr_storage()
        let ok: Bool = withUnsafeMutableBytes(of: &storage) { raw in
            if uv_ip4_addr(host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)) == 0 {
                return true
            }
            return uv_ip6_addr(host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)) == 0
        }
        return ok ? storage : nil
    }

    /// The `tcp://` address of a socket address (IPv4 or IPv6), or nil for other families.
    static func address(of sa: UnsafePointer<sockaddr>) -> Address? {
        var name = [CChar](repeating: 0, count: 64)
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                guard uv_ip4_name(sin, &name, name.count) == 0 else { return nil }
                return .tcp(host: String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
                            port: UInt16(bigEndian: sin.pointee.sin_port))
            }
        case AF_INET6:
            return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                guard uv_ip6_name(sin6, &name, name.count) == 0 else { return nil }
                return .tcp(host: String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
                            port: UInt16(bigEndian: sin6.pointee.sin6_port))
            }
        default:
            return nil
        }
    }

    /// Local or peer address of a TCP handle.
    static func tcpAddress(_ tcp: UnsafeMutablePointer<uv_tcp_t>, peer: Bool) -> Address? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutableBytes(of: &storage) { raw in
            let sa = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
            let status = peer ? uv_tcp_getpeername(tcp, sa, &length) : uv_tcp_getsockname(tcp, sa, &length)
            return status == 0 ? address(of: sa) : nil
        }
    }

    /// Local or peer path of a Unix-domain pipe handle; nil when unnamed.
    static func pipeAddress(_ pipe: UnsafeMutablePointer<uv_pipe_t>, peer: Bool) -> Address? {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        let status = peer ? uv_pipe_getpeername(pipe, &buffer, &size) : uv_pipe_getsockname(pipe, &buffer, &size)
        guard status == 0, size > 0 else { return nil }
        let path = String(decoding: buffer.prefix(size).prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.isEmpty ? nil : .unix(path: path)
    }
}
