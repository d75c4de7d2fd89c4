import Logging
import SpindleKernel
import Synchronization

/// Counts the connections a transport refused, per peer host, and logs each peer's refusals
/// sparingly: the first one, then whenever its count reaches a power of ten. A peer that
/// hammers a listener with bad handshakes costs a counter, not a log line per attempt.
final class RefusalLog: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    private let metrics: TCPMetrics?

    init(metrics: TCPMetrics? = nil) { self.metrics = metrics }
    /// Hosts tracked at most; beyond it the least informative entries (count 1) are dropped.
    static let maximumHosts = 4096

    /// Counts a refusal of `peer` and logs it when its count is 1, 10, 100, …
    /// - Returns: the peer host's count so far.
    @discardableResult
    func record(peer: Address, reason: CloseReason, logger: Logger) -> Int {
        metrics?.refusals.increment()
        let host = Self.host(of: peer)
        let count = counts.withLock { c -> Int in
            if c[host] == nil, c.count >= Self.maximumHosts {
                c = c.filter { $0.value > 1 }
            }
            c[host, default: 0] += 1
            return c[host]!
        }
        if Self.isLogged(count) {
            logger.warning("refused connection", metadata: [
                "peer": "\(peer)", "reason": "\(reason)", "refusalsFromHost": "\(count)"])
        }
        return count
    }

    /// Refusals so far, per peer host.
    var snapshot: [String: Int] { counts.withLock { $0 } }

    static func isLogged(_ count: Int) -> Bool {
        var n = count
        while n >= 10 && n % 10 == 0 { n /= 10 }
        return n == 1
    }

    /// The host part of an address (ports change per connection).
    static func host(of address: Address) -> String {
        switch address {
        case .tcp(let host, _): return host
        default: return address.description
        }
    }
}
