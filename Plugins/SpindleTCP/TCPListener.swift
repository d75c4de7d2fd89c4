import SpindleEventLoop
import SpindleKernel
import Synchronization

/// A bound SpindleTCP listener; closing it stops accepting but leaves accepted connections open.
final class TCPListener: TransportListener {
    let stream: StreamListener
    let address: Address
    private let onClose: Mutex<(@Sendable (TCPListener) -> Void)?>

    init(stream: StreamListener, onClose: @escaping @Sendable (TCPListener) -> Void) {
        self.stream = stream
        self.address = stream.address
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
        let loop = stream.loop
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let queued = loop.tryExecute {
                self.close()   // on the loop: uv_close is called now
                // A zero timer fires in the next loop iteration, after this iteration's close
                // callbacks have run.
                loop.scheduleTimer(after: .zero) { c.resume() }
            }
            if !queued { c.resume() }   // the loop has shut down, closing every handle
        }
    }
}
