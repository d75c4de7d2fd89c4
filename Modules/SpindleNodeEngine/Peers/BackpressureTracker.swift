import SpindleKernel

/// Receiver-side backpressure: while overloaded, the first few refused messages from each peer
/// are answered with a backoff notice; after that they are dropped silently (and counted)
/// so an overloaded node does not spend itself on notices.
struct BackpressureTracker: Sendable {
    enum Decision: Sendable, Equatable {
        /// Send the peer a backoff notice.
        case notify
        /// Drop without telling the peer (its request will time out).
        case silentDrop
    }

    /// Notices per peer per overload episode.
    let noticesPerEpisode: Int
    private var noticesSent: [NodeID: Int] = [:]
    private(set) var noticesTotal: UInt64 = 0
    private(set) var silentDrops: UInt64 = 0

    init(noticesPerEpisode: Int = 3) {
        self.noticesPerEpisode = max(0, noticesPerEpisode)
    }

    /// A message from `peer` was refused because the node is overloaded.
    mutating func refused(from peer: NodeID) -> Decision {
        isOverloaded = true
        let n = noticesSent[peer, default: 0]
        if n < noticesPerEpisode {
            noticesSent[peer] = n + 1
            noticesTotal &+= 1
            return .notify
        }
        silentDrops &+= 1
        return .silentDrop
    }

    /// The overload is over: the next episode starts with fresh notice budgets.
    mutating func relieved() {
        noticesSent.removeAll(keepingCapacity: true)
        isOverloaded = false
    }

    /// Whether the node is currently inside an overload episode.
    private(set) var isOverloaded = false

    /// Forgets the notices sent to `peer` (an idle peer's state).
    mutating func forget(_ peer: NodeID) {
        noticesSent[peer] = nil
    }
}
