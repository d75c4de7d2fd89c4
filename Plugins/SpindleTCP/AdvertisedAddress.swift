import SpindleKernel

#if canImport(Glibc)
import Glibc
#endif

/// What a listener tells peers to dial: never a wildcard.
///
/// A listener bound to `0.0.0.0` or `::` accepts on every interface, but `tcp://0.0.0.0:P` is
/// no address a peer can dial (it would dial itself). The listener advertises instead:
/// - `advertised`, when configured (behind NAT, the public host and port; port 0 keeps the
///   bound port);
/// - otherwise, for a wildcard bind, the first non-loopback IPv4 (or IPv6) address of an
///   interface that is up, or the host name when there is none;
/// - otherwise the bound address itself.
enum AdvertisedAddress {
    static func resolve(bound: Address, advertised: Address?) -> Address {
        guard case .tcp(let host, let port) = bound else { return bound }
        if case .tcp(let aHost, let aPort)? = advertised {
            return .tcp(host: aHost, port: aPort == 0 ? port : aPort)
        }
        guard isWildcard(host) else { return bound }
        if let ip = firstInterfaceAddress(ipv6: host == "::") { return .tcp(host: ip, port: port) }
        return .tcp(host: hostName() ?? "localhost", port: port)
    }

    static func isWildcard(_ host: String) -> Bool {
        host == "0.0.0.0" || host == "::" || host == "[::]"
    }

    /// The first address of an up, non-loopback interface (IPv4 first unless `ipv6`).
    static func firstInterfaceAddress(ipv6: Bool) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var v4: String?, v6: String?
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            let flags = Int32(entry.pointee.ifa_flags)
            guard flags & Int32(IFF_UP) != 0, flags & Int32(IFF_LOOPBACK) == 0,
                  let sa = entry.pointee.ifa_addr else { continue }
            var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let family = Int32(sa.pointee.sa_family)
            let length = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
            guard family == AF_INET || family == AF_INET6,
                  getnameinfo(sa, socklen_t(length), &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 else { continue }
            let s = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if family == AF_INET, v4 == nil { v4 = s }
            if family == AF_INET6, v6 == nil, !s.hasPrefix("fe80") { v6 = s }
        }
        return ipv6 ? (v6 ?? v4) : (v4 ?? v6)
    }

    static func hostName() -> String? {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count) == 0 else { return nil }
        let s = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return s.isEmpty ? nil : s
    }
}
