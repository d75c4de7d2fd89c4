import SpindleEventLoop
import SpindleKernel
import Synchronization

/// A bound SpindleTCP listener; closing it stops accepting but leaves accepted connections open.
final class TCPListener: TransportListener {
    let stream: StreamListener
    /// What peers dial: the bound address, or what it advertises instead of a wildcard
    /// (`AdvertisedAddress`).
    let address: Address
    /// The address actually bound (port 0 resolved; possibly a wildcard).
    let boundAddress: Address
    private let onClose: Mutex<(@Sendable (TCPListener) -> Void)?>

    init(stream: StreamListener, advertised: Address?, onClose: @escaping @Sendable (TCPListener) -> Void) {
        self.stream = stream
        self.boundAddress = stream.address
        self.address = AdvertisedAddress.resolve(bound: stream.address, advertised: advertised)
        self.onClose = Mutex(onClose)
    }

    func close() {
        stream.close()
        if let done = onClose.withLock({ f -> (@Sendable (TCPListener) -> Void)? in
            defer { f = nil }
            return f
        }) {
            done(self)
        }
    }

    /// Closes and returns once the listening handle has been freed.
    func closeAndWait() async {
        close()
        await stream.loop.completedTurns(2)
    }
}

extension EventLoop {
    /// Returns after the loop has finished `turns` more iterations: every handle closed before
    /// the call has run its close callback (and, with 2, handles those callbacks closed too).
    /// Returns at once if the loop has shut down (which closes every handle).
    func completedTurns(_ turns: Int) async {
        guard turns > 0 else { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            // Work queued from inside a drain runs in the next iteration, after this one's
            // close callbacks, so each nested hop is one full loop turn.
            @Sendable func hop(_ left: Int) {
                if left == 0 { c.resume(); return }
                if !self.tryExecute({ hop(left - 1) }) { c.resume() }
            }
            hop(turns)
        }
    }
}
