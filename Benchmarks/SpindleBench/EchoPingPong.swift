import Spindle

#if canImport(Glibc)
import Glibc
#endif

/// The TCP round-trip floor between two network namespaces: a blocking echo server (run by
/// `spindle-bench --echo-server tcp://HOST:PORT` inside a namespace) and a ping-pong client
/// that times 64-byte round trips to it. Plain sockets, no Spindle: what any message between
/// the two namespaces costs at least.
enum EchoPingPong {
    struct SocketError: Error, CustomStringConvertible {
        var description: String

        init(_ what: String, address: String) {
            description = "\(what) \(address): \(String(cString: strerror(errno)))"
        }
    }

    /// Serves echo connections on `address` one after another, forever; prints
    /// "echo listening on tcp://HOST:PORT" once it listens. Ends with the process (SIGTERM).
    static func serve(_ address: Address) throws -> Never {
        guard case .tcp(let host, let port) = address else { throw SocketError("not a TCP address:", address: "\(address)") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket for", address: "\(address)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = try socketAddress(host: host, port: port)
        let bound = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw SocketError("cannot listen on", address: "\(address)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        print("echo listening on tcp://\(host):\(UInt16(bigEndian: sin.sin_port))")
        fflush(nil)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { continue }
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            while true {
                let n = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                guard writeAll(client, buffer, count: n) else { break }
            }
            close(client)
        }
    }

    /// Times `count` round trips of `size` bytes to the echo server at `address` (after 100
    /// untimed ones).
    static func roundTrips(to address: Address, count: Int, size: Int = 64) throws -> Latencies {
        guard case .tcp(let host, let port) = address else { throw SocketError("not a TCP address:", address: "\(address)") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket for", address: "\(address)") }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = try socketAddress(host: host, port: port)
        let connected = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw SocketError("cannot connect to", address: "\(address)") }
        let message = [UInt8](repeating: 0x5A, count: size)
        var reply = [UInt8](repeating: 0, count: size)
        var latencies = Latencies()
        for i in 0..<(100 + count) {
            let t0 = SystemClock().now()
            guard writeAll(fd, message, count: size) else { throw SocketError("write to", address: "\(address)") }
            var got = 0
            while got < size {
                let n = reply.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, size - got) }
                guard n > 0 else { throw SocketError("read from", address: "\(address)") }
                got += n
            }
            if i >= 100 { latencies.record(SystemClock().now() - t0) }
        }
        blackHole(reply)
        return latencies
    }

    private static func socketAddress(host: String, port: UInt16) throws -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &sin.sin_addr) == 1 else {
            throw SocketError("not an IPv4 address:", address: host)
        }
        return sin
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], count: Int) -> Bool {
        var sent = 0
        while sent < count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + sent, count - sent) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }
}
